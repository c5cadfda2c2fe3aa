"""One reconciliation of one Bot: validate, check references, apply the desired
children, and derive the status from what is really there."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable

from botfleet_operator import builders, crd, decisions, metrics
from botfleet_operator.kube import Kube, KubeError

SERVICE_MONITOR_CRD = "servicemonitors.monitoring.coreos.com"
DEPLOYMENT_SPEC_KEYS = {"rasa": "rasa", "actions": "actionServer", "model-serving": "modelServing"}


@dataclass
class Outcome:
    status: dict[str, Any]
    # (reason, message) pairs, published as Kubernetes Events on the Bot.
    events: list[tuple[str, str]] = field(default_factory=list)
    problems: list[decisions.Problem] = field(default_factory=list)

    @property
    def retryable(self) -> bool:
        return any(p.reason != "InvalidSpec" for p in self.problems)


def now_iso() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def missing_secrets(kube: Kube, namespace: str, spec: dict[str, Any]) -> list[decisions.Problem]:
    problems = []
    for name, field_path in decisions.referenced_secrets(spec):
        if not kube.exists("Secret", namespace, name):
            problems.append(
                decisions.Problem("SecretMissing", f"Secret {name!r} referenced by {field_path} does not exist in namespace {namespace!r}")
            )
    return problems


_crd_cache: dict[str, tuple[float, bool]] = {}
CRD_CACHE_SECONDS = 60.0


def service_monitor_crd_installed(kube: Kube) -> bool:
    """Whether ServiceMonitors can be created. Cached for a minute: installing the
    Prometheus operator is rare, and asking on every reconcile of every Bot is not."""
    checked_at, installed = _crd_cache.get(SERVICE_MONITOR_CRD, (float("-inf"), False))
    if time.monotonic() - checked_at > CRD_CACHE_SECONDS:
        installed = kube.exists("CustomResourceDefinition", None, SERVICE_MONITOR_CRD)
        _crd_cache[SERVICE_MONITOR_CRD] = (time.monotonic(), installed)
    return installed


def apply_child(kube: Kube, obj: dict[str, Any], live: dict[str, Any] | None) -> str | None:
    """Creates or patches one child; returns "created", "updated" or None (in sync).
    Merge patches keep fields the operator does not own, such as the replica count an
    HPA set."""
    kind, name, namespace = obj["kind"], obj["metadata"]["name"], obj["metadata"]["namespace"]
    if live is None:
        try:
            kube.create(obj)
            return "created"
        except KubeError as error:
            if error.status != 409:  # it exists after all: compare and patch below
                raise
            live = kube.get(kind, namespace, name)
    if live is not None and not decisions.needs_update(obj, live):
        return None
    kube.merge_patch(kind, namespace, name, obj)
    return "updated"


def apply_children(
    kube: Kube, desired: list[dict[str, Any]], assume_new: bool = False
) -> tuple[list[tuple[str, str]], list[decisions.Problem]]:
    """Creates missing children and patches drifted ones (a hand edit or deletion is
    undone here). For a Bot just created, children are created without reading first:
    a conflict falls back to compare-and-patch, so this only saves round trips."""
    writes: dict[str, list[str]] = {}
    problems = []
    for obj in desired:
        kind, name, namespace = obj["kind"], obj["metadata"]["name"], obj["metadata"]["namespace"]
        try:
            action = apply_child(kube, obj, None if assume_new else kube.get(kind, namespace, name))
        except KubeError as error:
            problems.append(decisions.Problem("ApplyFailed", f"{kind} {name}: {error}"))
            continue
        if action:
            metrics.CHILD_WRITES.labels(kind, action).inc()
            writes.setdefault(action, []).append(f"{kind} {name}")
    # One Event per kind of write, not one per child: 1,000 Bots must not flood etcd.
    events = [(action.capitalize(), f"{action} {', '.join(objects)}") for action, objects in writes.items()]
    return events, problems


DeploymentReader = Callable[[str, str], "dict[str, Any] | None"]


def observe_components(
    kube: Kube, bot: dict[str, Any], read_deployment: DeploymentReader | None = None
) -> dict[str, decisions.ComponentState | None]:
    """Each component's Deployment state, read from the API or from a cache."""
    name, namespace, spec = bot["metadata"]["name"], bot["metadata"]["namespace"], bot["spec"]
    read = read_deployment or (lambda ns, deployment: kube.get("Deployment", ns, deployment))
    states: dict[str, decisions.ComponentState | None] = {}
    for component, spec_key in DEPLOYMENT_SPEC_KEYS.items():
        component_spec = spec.get(spec_key) or {}
        if component == "model-serving" and not component_spec.get("enabled", True):
            continue
        autoscaling = component_spec.get("autoscaling") or {}
        minimum = autoscaling.get("minReplicas") if autoscaling.get("enabled") else None
        states[component] = decisions.component_state(read(namespace, f"{name}-{component}"), minimum)
    return states


def reconcile(kube: Kube, body: dict[str, Any], new: bool = False) -> Outcome:
    started = time.perf_counter()
    bot = {**body, "spec": crd.with_defaults({"spec": body.get("spec") or {}})["spec"]}
    namespace = bot["metadata"]["namespace"]
    events: list[tuple[str, str]] = []
    errors = crd.validate_bot(body)
    if errors:
        problems = [decisions.Problem("InvalidSpec", "; ".join(errors))]
    else:
        problems = missing_secrets(kube, namespace, bot["spec"])
    if not problems:
        desired = builders.desired_objects(bot, service_monitor_crd=service_monitor_crd_installed(kube))
        events, problems = apply_children(kube, desired, assume_new=new)
    status = decisions.derive_status(bot, observe_components(kube, bot), problems, now_iso())
    metrics.RECONCILE_DURATION.observe(time.perf_counter() - started)
    metrics.RECONCILES.labels("problem" if problems else "ok").inc()
    for problem in problems:
        metrics.RECONCILE_ERRORS.labels(problem.reason).inc()
    return Outcome(status=status, events=events, problems=problems)


def reconcile_child(
    kube: Kube,
    body: dict[str, Any],
    kind: str,
    name: str,
    live: dict[str, Any] | None,
    read_deployment: DeploymentReader | None = None,
) -> Outcome | None:
    """The cheap path for an event on one child: restore that child if it drifted or
    was deleted, and refresh the Bot's status when a Deployment changed. None when
    there is nothing to do here (the Bot's own handler owns invalid or degraded Bots)."""
    started = time.perf_counter()
    bot = {**body, "spec": crd.with_defaults({"spec": body.get("spec") or {}})["spec"]}
    degraded = any(c.get("type") == "Degraded" and c.get("status") == "True" for c in (body.get("status") or {}).get("conditions") or [])
    if degraded or crd.validate_bot(body):
        return None
    desired = builders.desired_objects(bot, service_monitor_crd=service_monitor_crd_installed(kube))
    target = next((o for o in desired if o["kind"] == kind and o["metadata"]["name"] == name), None)
    if target is None:  # labelled like ours but no longer desired: not ours to touch
        return None
    events: list[tuple[str, str]] = []
    problems: list[decisions.Problem] = []
    try:
        action = apply_child(kube, target, live)
    except KubeError as error:
        action, problems = None, [decisions.Problem("ApplyFailed", f"{kind} {name}: {error}")]
    if action:
        metrics.CHILD_WRITES.labels(kind, action).inc()
        events.append(("Restored", f"{action} {kind} {name}, which had drifted from the Bot's spec"))
    if kind != "Deployment" and not action and not problems:
        return None
    status = decisions.derive_status(bot, observe_components(kube, bot, read_deployment), problems, now_iso())
    metrics.RECONCILE_DURATION.observe(time.perf_counter() - started)
    metrics.RECONCILES.labels("problem" if problems else "ok").inc()
    return Outcome(status=status, events=events, problems=problems)
