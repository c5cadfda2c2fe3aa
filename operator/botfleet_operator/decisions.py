"""Pure decisions of the reconciler: whether a Bot can be reconciled as specified,
what it references, and what its status says (and which Events that is worth). No I/O
here; each is tested on its own. Drift of children is decided in drift.py."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

from botfleet_operator import crd
from botfleet_operator.builders import child_name

COMPONENTS = ("rasa", "actions", "model-serving", "gateway")
# Each component's key in the Bot's spec.
COMPONENT_SPEC_KEYS = {"rasa": "rasa", "actions": "actionServer", "model-serving": "modelServing", "gateway": "gateway"}
# Components a Bot can switch off (spec.<key>.enabled).
OPTIONAL_COMPONENTS = frozenset({"model-serving", "gateway"})
# charts/bot truncates names to this ("bot.name"); children are "<name>-<component>".
MAX_NAME_LENGTH = 40
EPHEMERAL_MESSAGE = (
    "trimmed turns, orders and handoffs are kept on an emptyDir and lost on every pod restart; "
    "set spec.stores.analytics.databaseUrlFrom"
)
# Problems that stop the operator from applying any child: nothing can be rendered
# (InvalidSpec), or the pods could not start (SecretMissing). The others (an API the
# server does not serve, a failed write) leave the rest of the children applied.
BLOCKING = frozenset({"InvalidSpec", "SecretMissing"})
# Problems a retry cannot fix: only a change of the Bot or of the cluster can.
NOT_RETRYABLE = frozenset({"InvalidSpec", "APIUnavailable"})


@dataclass(frozen=True)
class Problem:
    """Why a Bot cannot be reconciled as specified (a Degraded condition)."""

    reason: str
    message: str


def name_errors(name: str) -> list[str]:
    """The chart truncates names to 40 characters: two longer names sharing a prefix
    would share their children. Refused, whatever the CRD in the cluster says."""
    if len(name) > MAX_NAME_LENGTH:
        return [f"metadata.name: must be at most {MAX_NAME_LENGTH} characters long (the Bot's children are named <name>-<component>), got {len(name)}"]
    return []


def is_ephemeral(spec: dict[str, Any]) -> bool:
    analytics = (spec.get("stores") or {}).get("analytics") or {}
    return analytics.get("ephemeral") is True and not analytics.get("databaseUrlFrom")


def storage_errors(spec: dict[str, Any]) -> list[str]:
    """The analytics store must be chosen: a database, or ephemeral: true said out loud.
    (The CRD's CEL rule says the same; Kubernetes 1.20 has no CEL.)"""
    analytics = (spec.get("stores") or {}).get("analytics") or {}
    database, ephemeral = bool(analytics.get("databaseUrlFrom")), analytics.get("ephemeral") is True
    if database == ephemeral:
        return ["spec.stores.analytics: Invalid value: stores.analytics needs exactly one of databaseUrlFrom or ephemeral: true"]
    return []


def spec_problems(bot: dict[str, Any]) -> list[Problem]:
    """Everything admission should have refused, as one InvalidSpec problem."""
    errors = crd.validate_bot(bot)
    if not any(e.startswith("metadata.name") for e in errors):
        errors += name_errors((bot.get("metadata") or {}).get("name", ""))
    if not any(e.startswith("spec.stores.analytics") for e in errors):
        errors += storage_errors(crd.with_defaults({"spec": bot.get("spec") or {}})["spec"])
    return [Problem("InvalidSpec", "; ".join(errors))] if errors else []


def blocks_apply(problems: list[Problem]) -> bool:
    return any(p.reason in BLOCKING for p in problems)


def retryable(problems: list[Problem]) -> bool:
    """Worth another try before the next resync: a missing Secret may appear, a failed
    write may succeed. A bad spec or an API the server lacks will not change by itself."""
    return any(p.reason not in NOT_RETRYABLE for p in problems)


def carried_problems(status: dict[str, Any] | None) -> list[Problem]:
    """The problems the last full reconcile found, from the Degraded condition: a
    child's event refreshes the status without re-checking them."""
    degraded = next((c for c in (status or {}).get("conditions") or [] if c.get("type") == "Degraded"), None)
    if not degraded or degraded.get("status") != "True":
        return []
    return [Problem(degraded.get("reason") or "Degraded", degraded.get("message") or "")]


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
    """One component's state from its Deployment. With autoscaling on, the operator
    leaves spec.replicas to the HPA, so the replica count is whatever the HPA set
    (the autoscaling minimum until the Deployment has one)."""
    if deployment is None:
        return None
    spec, status = deployment.get("spec") or {}, deployment.get("status") or {}
    desired = spec.get("replicas")
    if desired is None:
        desired = autoscaling_min if autoscaling_min is not None else 1
    metadata = deployment.get("metadata", {})
    annotations = spec.get("template", {}).get("metadata", {}).get("annotations", {})
    return ComponentState(
        desired=desired,
        ready=status.get("readyReplicas") or 0,
        updated=status.get("updatedReplicas") or 0,
        current_generation=(status.get("observedGeneration") or 0) >= (metadata.get("generation") or 0),
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


def bot_reference(bot: dict[str, Any]) -> dict[str, Any]:
    """A body to post Events against: apiVersion, kind, name, namespace and uid, so the
    Event's involvedObject is complete and `kubectl describe bot` lists it."""
    metadata = bot.get("metadata") or {}
    return {
        "apiVersion": f"{crd.GROUP}/{crd.VERSION}",
        "kind": crd.KIND,
        "metadata": {key: metadata[key] for key in ("name", "namespace", "uid") if metadata.get(key)},
    }


EVENT_MESSAGE_LIMIT = 1024


def event_object(reference: dict[str, Any], type: str, reason: str, message: str, now: str, instance: str) -> dict[str, Any]:
    """A core/v1 Event about a Bot, as `kubectl describe bot` lists it."""
    metadata = reference["metadata"]
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{metadata['name']}.", "namespace": metadata["namespace"]},
        "involvedObject": {"apiVersion": reference["apiVersion"], "kind": reference["kind"], **metadata},
        "type": type,
        "reason": reason,
        "message": message if len(message) <= EVENT_MESSAGE_LIMIT else message[: EVENT_MESSAGE_LIMIT - 1] + "…",
        "source": {"component": "botfleet-operator"},
        "reportingComponent": "botfleet-operator",
        "reportingInstance": instance,
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }


def status_patch(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """The JSON merge patch that turns `old` into `new`: keys that are gone become null
    (a merge patch of `new` alone would keep, say, a removed component forever)."""
    patch: dict[str, Any] = {key: None for key in old if key not in new}
    for key, value in new.items():
        before = old.get(key)
        if isinstance(value, dict) and isinstance(before, dict):
            patch[key] = status_patch(before, value)
        else:
            patch[key] = value
    return patch


def _condition(status: dict[str, Any] | None, kind: str) -> dict[str, Any]:
    return next((c for c in (status or {}).get("conditions") or [] if c.get("type") == kind), {})


def warnings(old: dict[str, Any] | None, new: dict[str, Any]) -> list[tuple[str, str]]:
    """Warning Events worth posting: a condition that turned bad, or a Degraded one
    whose reason or message changed. A problem that persists (re-checked every resync)
    is posted once, not once a minute."""
    found = []
    degraded, before = _condition(new, "Degraded"), _condition(old, "Degraded")
    if degraded.get("status") == "True" and (
        before.get("status") != "True" or (before.get("reason"), before.get("message")) != (degraded.get("reason"), degraded.get("message"))
    ):
        found.append((degraded["reason"], degraded["message"]))
    ephemeral = _condition(new, "EphemeralStorage")
    if ephemeral.get("status") == "True" and _condition(old, "EphemeralStorage").get("status") != "True":
        found.append(("EphemeralStorage", ephemeral["message"]))
    return found


def endpoints(name: str, namespace: str, spec: dict[str, Any]) -> dict[str, str]:
    if name_errors(name):  # refused: the truncated name would be another Bot's Service
        return {}
    internal = f"http://{child_name(name, 'rasa')}.{namespace}.svc:5005"
    # Channels enter through the gateway when there is one, as the ingress routes them.
    gateway = f"http://{child_name(name, 'gateway')}.{namespace}.svc:8080"
    ingress = spec.get("ingress") or {}
    public = None
    if ingress.get("enabled") and ingress.get("host"):
        public = f"{'https' if ingress.get('tls') else 'http'}://{ingress['host']}"
    base = public or (gateway if (spec.get("gateway") or {}).get("enabled", True) else internal)
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
    problem_text = "; ".join(p.message for p in problems)
    conditions = [
        condition(
            "Ready", settled and not degraded,
            "AllComponentsReady" if settled and not degraded else (problems[0].reason if degraded else "ComponentsNotReady"),
            "all components are ready" if settled and not degraded else (problem_text if degraded else f"not ready: {', '.join(not_ready)}"),
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
            problem_text if degraded else "no problems found",
            generation,
        ),
        condition(
            "EphemeralStorage", is_ephemeral(spec),
            "EmptyDir" if is_ephemeral(spec) else "Database",
            EPHEMERAL_MESSAGE if is_ephemeral(spec) else "the archive is in the analytics database (spec.stores.analytics.databaseUrlFrom)",
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
