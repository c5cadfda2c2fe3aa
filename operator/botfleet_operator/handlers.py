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
from botfleet_operator.reconcile import Outcome, reconcile

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
    settings.posting.level = logging.INFO
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
        kopf.info(body, reason=reason, message=message)
    for problem in outcome.problems:
        kopf.warn(body, reason=problem.reason, message=problem.message)
    _phases[(namespace, name)] = outcome.status["phase"]
    counts = collections.Counter(_phases.values())
    for phase in ("Pending", "Progressing", "Ready", "Degraded", "Failed"):
        metrics.BOTS.labels(phase).set(counts[phase])


def _reconcile(body: kopf.Body, retry: int) -> None:
    outcome = reconcile(Kube(api_client()), dict(body))
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
def reconcile_bot(*, body: kopf.Body, retry: int, **_: Any) -> None:
    _reconcile(body, retry)


def _owning_bot(body: kopf.Body) -> tuple[str, str] | None:
    for owner in body.get("metadata", {}).get("ownerReferences") or []:
        if owner.get("kind") == "Bot" and owner.get("controller"):
            return body["metadata"]["namespace"], owner["name"]
    return None


def child_changed(*, body: kopf.Body, **_: Any) -> None:
    """A child was edited, deleted or changed status: reconcile its Bot. This restores
    drift at once and keeps the Bot's status in step with its Deployments, without the
    finalizer that kopf timers would put on every Bot."""
    owner = _owning_bot(body)
    if owner is None:
        return
    namespace, name = owner
    kube = Kube(api_client())
    bot = kube.get("Bot", namespace, name)
    if bot is None or bot["metadata"].get("deletionTimestamp"):
        return
    outcome = reconcile(kube, bot)
    _publish(bot, outcome)


for _group, _version, _plural in CHILD_RESOURCES:
    kopf.on.event(_group, _version, _plural, labels={"app.kubernetes.io/managed-by": MANAGED_BY})(child_changed)


@kopf.on.event(GROUP, VERSION, PLURAL)
def forget_deleted_bot(*, type: str | None, body: kopf.Body, **_: Any) -> None:
    # An event handler, not on.delete: no finalizer on Bots, deletion never blocks.
    if type == "DELETED":
        _phases.pop((body["metadata"]["namespace"], body["metadata"]["name"]), None)
