"""Pure decisions of the reconciler: what a Bot references, whether a child drifted,
and what the Bot's status says. No I/O here; each is tested on its own."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

COMPONENTS = ("rasa", "actions", "model-serving")


@dataclass(frozen=True)
class Problem:
    """Why a Bot cannot be reconciled as specified (a Degraded condition)."""

    reason: str
    message: str


def referenced_secrets(spec: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(Secret name, the spec field naming it) for every Secret the Bot needs."""
    for index, channel in enumerate(spec.get("channels") or []):
        name = (channel.get("credentialsFrom") or {}).get("secretName")
        if name:
            yield name, f"spec.channels[{index}].credentialsFrom.secretName"
    stores = spec.get("stores") or {}
    for store in ("tracker", "lockStore"):
        name = ((stores.get(store) or {}).get("passwordFrom") or {}).get("name")
        if name:
            yield name, f"spec.stores.{store}.passwordFrom.name"
    name = ((stores.get("eventBroker") or {}).get("credentialsFrom") or {}).get("secretName")
    if name:
        yield name, "spec.stores.eventBroker.credentialsFrom.secretName"
    name = ((stores.get("analytics") or {}).get("databaseUrlFrom") or {}).get("name")
    if name:
        yield name, "spec.stores.analytics.databaseUrlFrom.name"
    secrets = spec.get("secrets") or {}
    for index, ref in enumerate(secrets.get("envFrom") or []):
        yield ref["secretName"], f"spec.secrets.envFrom[{index}].secretName"
    name = (secrets.get("apiTokenFrom") or {}).get("name")
    if name:
        yield name, "spec.secrets.apiTokenFrom.name"


def is_subset(desired: Any, live: Any) -> bool:
    """True when every field the operator sets has that value in the live object. The
    API server adds defaults and status, so equality would report drift forever."""
    if isinstance(desired, dict):
        return isinstance(live, dict) and all(k in live and is_subset(v, live[k]) for k, v in desired.items())
    if isinstance(desired, list):
        return isinstance(live, list) and len(desired) == len(live) and all(map(is_subset, desired, live))
    return bool(desired == live)


def needs_update(desired: dict[str, Any], live: dict[str, Any]) -> bool:
    managed = {k: v for k, v in desired.items() if k not in ("apiVersion", "kind", "status")}
    return not is_subset(managed, live)


@dataclass(frozen=True)
class ComponentState:
    desired: int
    ready: int
    updated: int
    current_generation: bool
    model_version: str | None = None

    @property
    def settled(self) -> bool:
        return self.current_generation and self.ready >= self.desired and self.updated >= self.desired


def component_state(deployment: dict[str, Any] | None, autoscaling_min: int | None) -> ComponentState | None:
    if deployment is None:
        return None
    spec, status = deployment.get("spec", {}), deployment.get("status", {})
    desired = spec.get("replicas", autoscaling_min if autoscaling_min is not None else 1)
    metadata = deployment.get("metadata", {})
    annotations = spec.get("template", {}).get("metadata", {}).get("annotations", {})
    return ComponentState(
        desired=desired,
        ready=status.get("readyReplicas", 0),
        updated=status.get("updatedReplicas", 0),
        current_generation=status.get("observedGeneration", 0) >= metadata.get("generation", 0),
        model_version=annotations.get("botfleet.io/model-version"),
    )


def condition(kind: str, ok: bool, reason: str, message: str, generation: int) -> dict[str, Any]:
    return {"type": kind, "status": "True" if ok else "False", "reason": reason, "message": message, "observedGeneration": generation}


def merge_conditions(old: list[dict[str, Any]], new: list[dict[str, Any]], now: str) -> list[dict[str, Any]]:
    """New conditions keep their lastTransitionTime while their status is unchanged."""
    previous = {c["type"]: c for c in old or []}
    merged = []
    for item in new:
        before = previous.get(item["type"])
        changed = before is None or before.get("status") != item["status"]
        merged.append({**item, "lastTransitionTime": now if changed else before.get("lastTransitionTime", now)})  # type: ignore[union-attr]
    return merged


def endpoints(name: str, namespace: str, spec: dict[str, Any]) -> dict[str, str]:
    internal = f"http://{name}-rasa.{namespace}.svc:5005"
    ingress = spec.get("ingress") or {}
    public = None
    if ingress.get("enabled") and ingress.get("host"):
        public = f"{'https' if ingress.get('tls') else 'http'}://{ingress['host']}"
    base = public or internal
    types = {c["type"] for c in spec.get("channels") or []}
    result = {"metrics": f"{internal}/metrics"}
    for channel in sorted(types):
        result[channel] = f"{base}/socket.io" if channel == "socketio" else f"{base}/webhooks/{channel}/webhook"
    return result


def derive_status(
    bot: dict[str, Any],
    components: dict[str, ComponentState | None],
    problems: list[Problem],
    now: str,
) -> dict[str, Any]:
    """The Bot's status from the children's real state and the problems found."""
    metadata, spec = bot["metadata"], bot["spec"]
    generation = metadata.get("generation", 1)
    old_status = bot.get("status") or {}
    present = {name: state for name, state in components.items() if state is not None}
    rasa = present.get("rasa")
    model_loaded = rasa is not None and rasa.ready > 0
    settled = bool(present) and len(present) == len(components) and all(s.settled for s in present.values())
    not_ready = [name for name, state in components.items() if state is None or state.ready < state.desired]
    degraded = bool(problems)
    conditions = [
        condition(
            "Ready", settled and not degraded,
            "AllComponentsReady" if settled and not degraded else (problems[0].reason if degraded else "ComponentsNotReady"),
            "all components are ready" if settled and not degraded else (problems[0].message if degraded else f"not ready: {', '.join(not_ready)}"),
            generation,
        ),
        condition(
            "ModelLoaded", model_loaded,
            "ModelLoaded" if model_loaded else "ModelNotLoaded",
            f"model {spec['model']['version']} served by {rasa.ready} rasa pod(s)" if model_loaded and rasa else "no rasa pod has loaded a model yet",
            generation,
        ),
        condition(
            "Progressing", bool(present) and not settled,
            "RollingOut" if present and not settled else "Complete",
            f"waiting for: {', '.join(not_ready)}" if present and not settled else "no rollout in progress",
            generation,
        ),
        condition(
            "Degraded", degraded,
            problems[0].reason if degraded else "AsExpected",
            "; ".join(p.message for p in problems) if degraded else "no problems found",
            generation,
        ),
    ]
    if any(p.reason == "InvalidSpec" for p in problems):
        phase = "Failed"
    elif degraded:
        phase = "Degraded"
    elif settled:
        phase = "Ready"
    elif present:
        phase = "Progressing"
    else:
        phase = "Pending"
    desired_total = sum(s.desired for s in present.values())
    ready_total = sum(s.ready for s in present.values())
    current_version = rasa.model_version if rasa and rasa.settled else old_status.get("currentModelVersion")
    status: dict[str, Any] = {
        "observedGeneration": generation,
        "phase": phase,
        "replicas": f"{ready_total}/{desired_total}",
        "components": {
            name: {"desiredReplicas": state.desired, "readyReplicas": state.ready} for name, state in present.items()
        },
        "endpoints": endpoints(metadata["name"], metadata["namespace"], spec),
        "conditions": merge_conditions(old_status.get("conditions") or [], conditions, now),
    }
    if current_version:
        status["currentModelVersion"] = current_version
    return status
