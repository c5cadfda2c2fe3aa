"""kopf handlers: thin wrappers around reconcile(). All decisions live elsewhere."""

from __future__ import annotations

import asyncio
import collections
import logging
import os
from datetime import datetime, timezone
from typing import Any

import kopf
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from botfleet_operator import decisions, drift, metrics, peering, resync
from botfleet_operator.builders import MANAGED_BY
from botfleet_operator.crd import GROUP, PLURAL, VERSION
from botfleet_operator.kube import Kube, KubeError, api_client
from botfleet_operator.reconcile import BotLocks, Outcome, reconcile, reconcile_child
from botfleet_operator.rollout.canary import COMMAND_ANNOTATION

logger = logging.getLogger(__name__)

# The kinds the operator creates; their events lead back to the owning Bot. A kind the
# server does not serve (autoscaling/v2 and policy/v1 on Kubernetes 1.20, ServiceMonitor
# without the Prometheus Operator) is not watched: kopf logs "Unresolved resources
# cannot be served" once and serves the others, and picks it up when it appears.
CHILD_RESOURCES = [
    ("", "v1", "configmaps"),
    ("", "v1", "services"),
    ("apps", "v1", "deployments"),
    ("networking.k8s.io", "v1", "ingresses"),
    ("networking.k8s.io", "v1", "networkpolicies"),
    ("autoscaling", "v2", "horizontalpodautoscalers"),
    ("policy", "v1", "poddisruptionbudgets"),
    ("monitoring.coreos.com", "v1", "servicemonitors"),
]
RESYNC_ENV, RETRY_ENV = "BOTFLEET_RESYNC_SECONDS", "BOTFLEET_RETRY_BASE_SECONDS"
ROLLOUT_TICK_ENV = "BOTFLEET_ROLLOUT_TICK_SECONDS"
METRICS_PORT_ENV, METRICS_ADDRESS_ENV = "BOTFLEET_METRICS_PORT", "BOTFLEET_METRICS_ADDRESS"
PEERING_LIFETIME_ENV = "BOTFLEET_PEERING_LIFETIME"
PEERING_CHECK_SECONDS = 10.0
_phases: dict[tuple[str, str], str] = {}
LOCKS = BotLocks()
SCHEDULE = resync.Schedule(interval=60, retry_base=10)


def _env_seconds(name: str, default: float) -> float:
    value = os.environ.get(name) or ""
    try:
        return float(value) if value else default
    except ValueError as error:
        raise kopf.PermanentError(f"{name}={value!r} is not a number of seconds") from error


async def _serve_ops(address: str, port: int) -> None:
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
    await web.TCPSite(runner, address, port).start()


@kopf.on.startup()
async def configure(*, settings: kopf.OperatorSettings, memo: kopf.Memo, **kwargs: Any) -> None:
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="botfleet.io")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix="botfleet.io")
    # kopf's own INFO lines ("Handler succeeded") would be one more Event per Bot per
    # change; the operator posts its own Normal events with kopf.event() instead.
    settings.posting.level = logging.WARNING
    # Peers refresh their record in the peering object a little before it expires:
    # a longer lifetime means fewer keep-alive writes and a slower takeover after a crash
    # (a clean shutdown hands over at once).
    settings.peering.lifetime = int(_env_seconds(PEERING_LIFETIME_ENV, settings.peering.lifetime))
    # No on.delete handler, no timer, no daemon: kopf adds no finalizer, Kubernetes'
    # garbage collector removes the children through their owner references, and
    # deleting a Bot never waits for the operator.
    port = int(os.environ.get(METRICS_PORT_ENV, "8000"))
    address = os.environ.get(METRICS_ADDRESS_ENV) or "0.0.0.0"
    if port:
        await _serve_ops(address, port)
        logger.info("metrics and readiness on %s:%d", address, port)
    memo["resync"] = _start_resync(settings, kwargs["bots_by_name"], kwargs["children_by_bot"], kwargs["deployments_by_name"])


def _start_resync(
    settings: kopf.OperatorSettings, bots_index: kopf.Index[Any, Any], children: kopf.Index[Any, Any], deployments: kopf.Index[Any, Any]
) -> asyncio.Task[None]:
    """The periodic full reconcile of every Bot in kopf's index (see resync.py)."""
    SCHEDULE.interval = max(1.0, _env_seconds(RESYNC_ENV, 60.0))
    SCHEDULE.retry_base = max(0.1, min(_env_seconds(RETRY_ENV, 10.0), SCHEDULE.interval))
    # How often a Bot with a canary rollout under way is reconciled (its analysis runs
    # when due, spec.rollout.canary.analysis.interval).
    SCHEDULE.rollout_tick = max(0.1, min(_env_seconds(ROLLOUT_TICK_ENV, 10.0), SCHEDULE.interval))

    def bots() -> list[Any]:
        return list(bots_index)

    def reconcile_one(key: Any) -> str:
        lock = LOCKS.get(*key)
        if not lock.acquire(blocking=False):
            return "busy"
        try:
            body = _cached(bots_index, key)  # read under the lock: the latest spec
            if body is None or body["metadata"].get("deletionTimestamp"):
                return "ok"
            outcome = _run_reconcile(body, False, children, deployments)
        finally:
            lock.release()
        metrics.RESYNCS.labels("problem" if outcome.problems else "ok").inc()
        return _result(outcome)

    gate = PeeringGate(settings)

    async def active() -> bool:
        return await gate.active([key[0] for key in bots()])

    logger.info("resyncing every Bot every %gs", SCHEDULE.interval)
    return asyncio.create_task(resync.run(SCHEDULE, bots, reconcile_one, active, tick=min(1.0, SCHEDULE.retry_base)))


@kopf.on.cleanup()
async def stop_resync(*, memo: kopf.Memo, **_: Any) -> None:
    task = memo.get("resync")
    if task is not None:
        task.cancel()


class PeeringGate:
    """Whether kopf is active here (not paused for a peer), asked of the peering
    objects at most every PEERING_CHECK_SECONDS (see peering.py)."""

    def __init__(self, settings: kopf.OperatorSettings) -> None:
        self.settings = settings
        self._checked_at = float("-inf")
        self._active = True

    async def active(self, namespaces: list[str]) -> bool:
        peering_settings = self.settings.peering
        if peering_settings.standalone or not peering_settings.mandatory:
            return True
        loop = asyncio.get_running_loop()
        if loop.time() - self._checked_at < PEERING_CHECK_SECONDS:
            return self._active
        self._active = await asyncio.to_thread(self._check, sorted(set(namespaces)))
        self._checked_at = loop.time()
        return self._active

    def _check(self, namespaces: list[str]) -> bool:
        kube, name = Kube(api_client()), self.settings.peering.name
        try:
            if self.settings.peering.clusterwide:
                objects = [kube.get("ClusterKopfPeering", None, name)]
            else:
                objects = [kube.get("KopfPeering", namespace, name) for namespace in namespaces]
        except KubeError as error:
            logger.warning("cannot read the peering object %r, not resyncing: %s", name, error)
            return False
        identity = os.environ.get("POD_ID")  # kopf's own identity when set
        return not peering.paused(objects, identity, self.settings.peering.priority, datetime.now(timezone.utc))


def _result(outcome: Outcome) -> str:
    if outcome.problems and outcome.retryable:
        return "retry"
    return "rollout" if outcome.rollout_active else "ok"


# The status last written to each Bot. kopf's index of Bots (and so the body a child's
# event or a resync sees) lags behind the operator's own status writes by a watch
# event: compared with that, one status would be written again and its warnings
# posted again. Nobody else writes a Bot's status.
_published: dict[tuple[str, str], dict[str, Any]] = {}


def _latest(body: dict[str, Any]) -> dict[str, Any]:
    """The Bot with the status the operator last wrote to it (if it wrote one)."""
    key = (body["metadata"]["namespace"], body["metadata"]["name"])
    published = _published.get(key)
    return {**body, "status": published} if published is not None else body


def _post_event(reference: dict[str, Any], type: str, reason: str, message: str) -> None:
    """Posts an Event through the API itself: kopf.event() only works inside kopf's own
    handler context, and the resync loop reconciles in worker threads outside it. A
    refused Event is logged, never a failed reconcile."""
    now = datetime.now(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    event = decisions.event_object(reference, type, reason, message, now, os.environ.get("POD_ID", "") or os.uname().nodename)
    try:
        Kube(api_client()).create(event)
    except (KubeError, OSError) as error:
        logger.warning("could not post the %s Event %s on Bot %s: %s", type, reason, reference["metadata"].get("name"), error)


def _publish(body: Any, outcome: Outcome) -> None:  # a kopf Body or a raw object dict
    name, namespace = body["metadata"]["name"], body["metadata"]["namespace"]
    old = dict(body.get("status") or {})
    if outcome.status != old:  # unchanged status: no write, no event storm
        Kube(api_client()).merge_patch("Bot", namespace, name, {"status": decisions.status_patch(old, outcome.status)}, subresource="status")
    _published[(namespace, name)] = outcome.status
    reference = decisions.bot_reference(body)
    for reason, message in outcome.events:
        _post_event(reference, "Normal", reason, message)
    for type, reason, message in outcome.rollout_events:
        _post_event(reference, type, reason, message)
        log = logger.warning if type == "Warning" else logger.info
        log("Bot %s/%s: %s: %s", namespace, name, reason, message)
    if outcome.clear_rollout_command is not None:
        # Seen once: a stale command must never act on the next rollout. Only if it still
        # holds the value acted on (a JSON patch test): a newer command stays for the next tick.
        pointer = "/metadata/annotations/" + COMMAND_ANNOTATION.replace("~", "~0").replace("/", "~1")
        try:
            Kube(api_client()).json_patch("Bot", namespace, name, [
                {"op": "test", "path": pointer, "value": outcome.clear_rollout_command}, {"op": "remove", "path": pointer}])
        except KubeError as error:  # 422: changed meanwhile; the next tick reads the new one
            logger.info("Bot %s/%s: rollout command not removed: %s", namespace, name, error)
    # A problem is posted when it appears or changes, not on every resync that finds it.
    for reason, message in decisions.warnings(old, outcome.status):
        _post_event(reference, "Warning", reason, message)
    for problem in outcome.problems:
        logger.warning("Bot %s/%s: %s: %s", namespace, name, problem.reason, problem.message)
    _phases[(namespace, name)] = outcome.status["phase"]
    metrics.observe_bot(namespace, name, outcome.status)
    _count_phases()


def _count_phases() -> None:
    counts = collections.Counter(_phases.values())
    for phase in ("Pending", "Progressing", "Ready", "Degraded", "Failed"):
        metrics.BOTS.labels(phase).set(counts[phase])


def _cached(index: kopf.Index[Any, Any], key: Any) -> dict[str, Any] | None:
    for value in index.get(key, ()):
        return dict(value)
    return None


def _run_reconcile(body: dict[str, Any], new: bool, children: kopf.Index[Any, Any], deployments: kopf.Index[Any, Any]) -> Outcome:
    body = _latest(body)
    kube = Kube(api_client())
    key = (body["metadata"]["namespace"], body["metadata"]["name"])

    def read_deployment(ns: str, deployment: str) -> dict[str, Any] | None:
        return _cached(deployments, (ns, deployment)) or kube.get("Deployment", ns, deployment)

    outcome = reconcile(kube, body, new=new, children=lambda: list(children.get(key, ())), read_deployment=read_deployment)
    _publish(body, outcome)
    return outcome


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL, field="spec")
def reconcile_bot(*, body: kopf.Body, retry: int, reason: str, **kwargs: Any) -> None:
    """Never raises for a Bot's problems: they are in its status and Events, and the
    resync loop tries again (a kopf retry would also write its progress to the Bot)."""
    namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
    raw = {"metadata": dict(body.metadata), "spec": dict(body.spec), "status": dict(body.status)}
    with LOCKS.get(namespace, name):
        # A Bot seen for the first time has no children yet, unless this is a retry.
        outcome = _run_reconcile(raw, reason == "create" and retry == 0, kwargs["children_by_bot"], kwargs["deployments_by_name"])
    SCHEDULE.done((namespace, name), _result(outcome))
    # Nothing returned: kopf would store it under status.<handler>, outside our schema.


def _owning_bot(body: kopf.Body) -> tuple[str, str, str] | None:
    for owner in body.get("metadata", {}).get("ownerReferences") or []:
        if owner.get("kind") == "Bot" and owner.get("controller"):
            return body["metadata"]["namespace"], owner["name"], owner.get("uid", "")
    return None


# In-memory caches fed by kopf's watches (informers, in controller-runtime's terms):
# a child's event needs its Bot and the Bot's Deployments, and a full reconcile needs
# every live child; reading them from the API each time would cost a few requests per
# event and per resync, thousands per minute at scale.
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


def children_by_bot(*, namespace: str | None, body: kopf.Body, resource: kopf.Resource, **_: Any) -> dict[tuple[str | None, str], drift.LiveChild]:
    """Every live child, by (namespace, Bot label), as a small summary: what pruning and
    the in-sync check need (a fingerprint of the object, not the object)."""
    bot = (body.get("metadata", {}).get("labels") or {}).get(drift.BOT_LABEL)
    if not bot:
        return {}
    return {(namespace, bot): drift.live_child(dict(body), resource.kind)}


def child_changed(*, type: str | None, body: kopf.Body, resource: kopf.Resource, **kwargs: Any) -> None:
    """A child was edited, deleted or changed status: restore it if it drifted, and
    refresh the Bot's status when a Deployment changed. This keeps the Bot in step with
    its children between full reconciles."""
    owner = _owning_bot(body)
    if owner is None:
        return
    namespace, name, owner_uid = owner
    if type == "DELETED":
        drift.CACHE.forget(body["metadata"].get("uid", ""))
    kube = Kube(api_client())
    # kopf passes each index as a keyword argument named after its function.
    bots, deployments = kwargs["bots_by_name"], kwargs["deployments_by_name"]
    live = None if type == "DELETED" else dict(body)

    def read_deployment(ns: str, deployment: str) -> dict[str, Any] | None:
        return _cached(deployments, (ns, deployment)) or kube.get("Deployment", ns, deployment)

    kind = body.get("kind") or resource.kind or ""
    # Under the Bot's lock, then the Bot as it is now (its latest spec, the status last
    # written): a handler may have changed both while this event waited.
    with LOCKS.get(namespace, name):
        bot = _cached(bots, (namespace, name)) or kube.get("Bot", namespace, name)
        if bot is None or bot["metadata"].get("deletionTimestamp") or (owner_uid and bot["metadata"].get("uid") != owner_uid):
            return
        bot = _latest(bot)
        outcome = reconcile_child(kube, bot, kind, body["metadata"]["name"], live, read_deployment)
        if outcome is not None:
            _publish(bot, outcome)


for _group, _version, _plural in CHILD_RESOURCES:
    kopf.index(_group, _version, _plural, labels=MANAGED, id="children_by_bot")(children_by_bot)
    kopf.on.event(_group, _version, _plural, labels=MANAGED)(child_changed)


@kopf.on.event(GROUP, VERSION, PLURAL)
def forget_deleted_bot(*, type: str | None, body: kopf.Body, **_: Any) -> None:
    # An event handler, not on.delete: no finalizer on Bots, deletion never blocks.
    if type == "DELETED":
        namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
        _phases.pop((namespace, name), None)
        _published.pop((namespace, name), None)
        metrics.forget_bot(namespace, name)
        _count_phases()
        SCHEDULE.forget((namespace, name))
        LOCKS.forget(namespace, name)
