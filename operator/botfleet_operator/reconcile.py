"""One reconciliation of one Bot: validate, check references, apply the desired
children, and derive the status from what is really there."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

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


def apply_children(kube: Kube, desired: list[dict[str, Any]]) -> tuple[list[tuple[str, str]], list[decisions.Problem]]:
    """Creates missing children and patches drifted ones (a hand edit or deletion is
    undone here). Merge patches keep fields the operator does not own, such as the
    replica count an HPA set."""
    events, problems = [], []
    for obj in desired:
        kind, name, namespace = obj["kind"], obj["metadata"]["name"], obj["metadata"]["namespace"]
        try:
            live = kube.get(kind, namespace, name)
            if live is None:
                try:
                    kube.create(obj)
                    action = "created"
                except KubeError as error:
                    if error.status != 409:  # created concurrently: patch it instead
                        raise
                    kube.merge_patch(kind, namespace, name, obj)
                    action = "updated"
            elif decisions.needs_update(obj, live):
                kube.merge_patch(kind, namespace, name, obj)
                action = "updated"
            else:
                continue
        except KubeError as error:
            problems.append(decisions.Problem("ApplyFailed", f"{kind} {name}: {error}"))
            continue
        metrics.CHILD_WRITES.labels(kind, action).inc()
        events.append((action.capitalize(), f"{action} {kind} {name}"))
    return events, problems


def observe_components(kube: Kube, bot: dict[str, Any]) -> dict[str, decisions.ComponentState | None]:
    name, namespace, spec = bot["metadata"]["name"], bot["metadata"]["namespace"], bot["spec"]
    states: dict[str, decisions.ComponentState | None] = {}
    for component, spec_key in DEPLOYMENT_SPEC_KEYS.items():
        component_spec = spec.get(spec_key) or {}
        if component == "model-serving" and not component_spec.get("enabled", True):
            continue
        autoscaling = component_spec.get("autoscaling") or {}
        minimum = autoscaling.get("minReplicas") if autoscaling.get("enabled") else None
        states[component] = decisions.component_state(kube.get("Deployment", namespace, f"{name}-{component}"), minimum)
    return states


def reconcile(kube: Kube, body: dict[str, Any]) -> Outcome:
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
        service_monitors = kube.exists("CustomResourceDefinition", None, SERVICE_MONITOR_CRD)
        desired = builders.desired_objects(bot, service_monitor_crd=service_monitors)
        events, problems = apply_children(kube, desired)
    status = decisions.derive_status(bot, observe_components(kube, bot), problems, now_iso())
    metrics.RECONCILE_DURATION.observe(time.perf_counter() - started)
    metrics.RECONCILES.labels("problem" if problems else "ok").inc()
    for problem in problems:
        metrics.RECONCILE_ERRORS.labels(problem.reason).inc()
    return Outcome(status=status, events=events, problems=problems)
