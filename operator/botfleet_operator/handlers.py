"""kopf handlers: thin wrappers around reconcile(). All decisions live elsewhere."""

from __future__ import annotations

import collections
import logging
import os
from typing import Any

import kopf
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from botfleet_operator import metrics
from botfleet_operator.builders import MANAGED_BY
from botfleet_operator.crd import GROUP, PLURAL, VERSION
from botfleet_operator.kube import Kube, api_client
from botfleet_operator.reconcile import Outcome, reconcile, reconcile_child

# The kinds the operator creates; their events lead back to the owning Bot.
CHILD_RESOURCES = [
    ("", "v1", "configmaps"),
    ("", "v1", "services"),
    ("apps", "v1", "deployments"),
    ("networking.k8s.io", "v1", "ingresses"),
    ("networking.k8s.io", "v1", "networkpolicies"),
    ("autoscaling", "v2", "horizontalpodautoscalers"),
    ("policy", "v1", "poddisruptionbudgets"),
]
RETRY_BASE_SECONDS = float(os.environ.get("BOTFLEET_RETRY_BASE_SECONDS", "10"))
_phases: dict[tuple[str, str], str] = {}


async def _serve_ops(port: int) -> None:
    """/metrics and /readyz (ready once the operator has started) on one port."""
    from aiohttp import web

    from botfleet_operator.crd import load_crd

    async def metrics_endpoint(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def ready(_: web.Request) -> web.Response:
        load_crd()  # the schema the operator validates with must be readable
        return web.json_response({"status": "ready"})

    app = web.Application()
    app.router.add_get("/metrics", metrics_endpoint)
    app.router.add_get("/readyz", ready)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "0.0.0.0", port).start()


@kopf.on.startup()
async def configure(*, settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="botfleet.io")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix="botfleet.io")
    # kopf's own INFO lines ("Handler succeeded") would be one more Event per Bot per
    # change; the operator posts its own Normal events with kopf.event() instead.
    settings.posting.level = logging.WARNING
    # No on.delete handler, so kopf adds no finalizer: Kubernetes' garbage collector
    # removes the children through their owner references and deletion never blocks.
    port = int(os.environ.get("BOTFLEET_METRICS_PORT", "8000"))
    if port:
        await _serve_ops(port)
        logging.getLogger(__name__).info("metrics and readiness on :%d", port)


def _publish(body: Any, outcome: Outcome) -> None:  # a kopf Body or a raw object dict
    name, namespace = body["metadata"]["name"], body["metadata"]["namespace"]
    if outcome.status != body.get("status"):  # unchanged status: no write, no event storm
        Kube(api_client()).merge_patch("Bot", namespace, name, {"status": outcome.status}, subresource="status")
    for reason, message in outcome.events:
        kopf.event(body, type="Normal", reason=reason, message=message)
    for problem in outcome.problems:
        kopf.warn(body, reason=problem.reason, message=problem.message)
    _phases[(namespace, name)] = outcome.status["phase"]
    metrics.observe_bot(namespace, name, outcome.status)
    _count_phases()


def _count_phases() -> None:
    counts = collections.Counter(_phases.values())
    for phase in ("Pending", "Progressing", "Ready", "Degraded", "Failed"):
        metrics.BOTS.labels(phase).set(counts[phase])


def _reconcile(body: kopf.Body, retry: int, new: bool) -> None:
    outcome = reconcile(Kube(api_client()), dict(body), new=new)
    _publish(body, outcome)
    if outcome.problems and outcome.retryable:
        # Retry with backoff until the problem (say, a missing Secret) is fixed.
        raise kopf.TemporaryError("; ".join(p.message for p in outcome.problems), delay=min(300, RETRY_BASE_SECONDS * 2 ** min(retry, 5)))
    if outcome.problems:
        raise kopf.PermanentError("; ".join(p.message for p in outcome.problems))
    # Nothing returned: kopf would store it under status.<handler>, outside our schema.


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL, field="spec")
def reconcile_bot(*, body: kopf.Body, retry: int, reason: str, **_: Any) -> None:
    # A Bot seen for the first time has no children yet, unless this is a retry.
    _reconcile(body, retry, new=reason == "create" and retry == 0)


def _owning_bot(body: kopf.Body) -> tuple[str, str] | None:
    for owner in body.get("metadata", {}).get("ownerReferences") or []:
        if owner.get("kind") == "Bot" and owner.get("controller"):
            return body["metadata"]["namespace"], owner["name"]
    return None


# In-memory caches fed by kopf's watches (informers, in controller-runtime's terms):
# a child's event needs its Bot and the Bot's Deployments, and reading them from the
# API on every event would cost a few requests per event, thousands per minute at scale.
MANAGED = {"app.kubernetes.io/managed-by": MANAGED_BY}


@kopf.index(GROUP, VERSION, PLURAL)
def bots_by_name(*, namespace: str | None, name: str, body: kopf.Body, **_: Any) -> dict[tuple[str | None, str], dict[str, Any]]:
    return {(namespace, name): {"metadata": dict(body.metadata), "spec": dict(body.spec), "status": dict(body.status)}}


@kopf.index("apps", "v1", "deployments", labels=MANAGED)
def deployments_by_name(*, namespace: str | None, name: str, body: kopf.Body, **_: Any) -> dict[tuple[str | None, str], dict[str, Any]]:
    # Only what the status is derived from: a Deployment's full body is kilobytes.
    spec = body.get("spec") or {}
    return {(namespace, name): {
        "metadata": {"generation": body.metadata.get("generation", 0)},
        "spec": {"replicas": spec.get("replicas"), "template": {"metadata": {"annotations": dict((spec.get("template") or {}).get("metadata", {}).get("annotations") or {})}}},
        "status": dict(body.get("status") or {}),
    }}


def _cached(index: kopf.Index[Any, Any], key: tuple[str, str]) -> dict[str, Any] | None:
    for value in index.get(key, ()):
        return dict(value)
    return None


def child_changed(*, type: str | None, body: kopf.Body, resource: kopf.Resource, **kwargs: Any) -> None:
    """A child was edited, deleted or changed status: restore it if it drifted, and
    refresh the Bot's status when a Deployment changed. This keeps the Bot in step with
    its children without the finalizer that kopf timers would put on every Bot."""
    owner = _owning_bot(body)
    if owner is None:
        return
    namespace, name = owner
    kube = Kube(api_client())
    # kopf passes each index as a keyword argument named after its function.
    bots, deployments = kwargs["bots_by_name"], kwargs["deployments_by_name"]
    bot = _cached(bots, owner) or kube.get("Bot", namespace, name)
    if bot is None or bot["metadata"].get("deletionTimestamp"):
        return
    live = None if type == "DELETED" else dict(body)

    def read_deployment(ns: str, deployment: str) -> dict[str, Any] | None:
        return _cached(deployments, (ns, deployment)) or kube.get("Deployment", ns, deployment)

    kind = body.get("kind") or resource.kind or ""
    outcome = reconcile_child(kube, bot, kind, body["metadata"]["name"], live, read_deployment)
    if outcome is not None:
        _publish(bot, outcome)


for _group, _version, _plural in CHILD_RESOURCES:
    kopf.on.event(_group, _version, _plural, labels={"app.kubernetes.io/managed-by": MANAGED_BY})(child_changed)


@kopf.on.event(GROUP, VERSION, PLURAL)
def forget_deleted_bot(*, type: str | None, body: kopf.Body, **_: Any) -> None:
    # An event handler, not on.delete: no finalizer on Bots, deletion never blocks.
    if type == "DELETED":
        namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
        _phases.pop((namespace, name), None)
        metrics.forget_bot(namespace, name)
        _count_phases()
