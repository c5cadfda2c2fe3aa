"""One reconciliation of one Bot: validate, check references, server-side apply the
desired children that drifted, delete the ones no longer desired, and derive the
status from what is really there."""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Iterable

from botfleet_operator import builders, crd, decisions, discovery, drift, metrics
from botfleet_operator.kube import FIELD_MANAGER, RESOURCES, Kube, KubeError
from botfleet_operator.rollout import controller as rollout
from botfleet_operator.rollout.spec import SpecError

SERVICE_MONITOR_CRD = "servicemonitors.monitoring.coreos.com"
# Every kind charts/bot renders (the API token Secret is created once, never pruned).
CHILD_KINDS = (
    "ConfigMap", "Service", "Deployment", "Ingress", "NetworkPolicy",
    "HorizontalPodAutoscaler", "PodDisruptionBudget", "ServiceMonitor",
)
EVENT_WORDING = {
    "Created": ("created", ""),
    "Updated": ("updated", " to the Bot's spec"),
    "Restored": ("restored", ", which had drifted from the Bot's spec or been deleted"),
    "Pruned": ("deleted", ", which the Bot no longer specifies"),
}

ChildLister = Callable[[], Iterable[drift.LiveChild]]
DeploymentReader = Callable[[str, str], "dict[str, Any] | None"]


@dataclass
class Outcome:
    status: dict[str, Any]
    # (reason, message) pairs, published as Normal Events on the Bot.
    events: list[tuple[str, str]] = field(default_factory=list)
    problems: list[decisions.Problem] = field(default_factory=list)
    # The rollout's own Events, (type, reason, message): its transitions.
    rollout_events: list[tuple[str, str, str]] = field(default_factory=list)
    # The rollout command annotation's value that was acted on: remove it from the Bot
    # (if it still holds that value: a newer command must not be lost).
    clear_rollout_command: str | None = None
    # A canary rollout is under way (or draining): reconcile again at the next tick.
    rollout_active: bool = False

    @property
    def retryable(self) -> bool:
        return decisions.retryable(self.problems)


@dataclass
class Writes:
    """What one reconcile wrote, for one Event per kind of write (not one per child:
    1,000 Bots must not flood etcd with Events)."""

    done: dict[str, list[str]] = field(default_factory=dict)

    def add(self, action: str, what: str) -> None:
        self.done.setdefault(action, []).append(what)

    def events(self) -> list[tuple[str, str]]:
        return [(action, f"{EVENT_WORDING[action][0]} {', '.join(objects)}{EVENT_WORDING[action][1]}") for action, objects in self.done.items()]


def now_iso() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def defaulted(body: dict[str, Any]) -> dict[str, Any]:
    return {**body, "spec": crd.with_defaults({"spec": body.get("spec") or {}})["spec"]}


def missing_secrets(kube: Kube, namespace: str, spec: dict[str, Any]) -> list[decisions.Problem]:
    problems = []
    for name, field_path in decisions.referenced_secrets(spec):
        if not kube.exists("Secret", namespace, name):
            problems.append(
                decisions.Problem("SecretMissing", f"Secret {name!r} referenced by {field_path} does not exist in namespace {namespace!r}")
            )
    return problems


_crd_cache: dict[str, tuple[float, bool]] = {}
_crd_lock = threading.Lock()
CRD_CACHE_SECONDS = 60.0


def service_monitor_crd_installed(kube: Kube) -> bool:
    """Whether ServiceMonitors can be created. Cached for a minute: installing the
    Prometheus operator is rare, and asking on every reconcile of every Bot is not.
    (One thread asks when the minute is up; the others wait for its answer.)"""
    with _crd_lock:
        checked_at, installed = _crd_cache.get(SERVICE_MONITOR_CRD, (float("-inf"), False))
        if time.monotonic() - checked_at > CRD_CACHE_SECONDS:
            installed = kube.exists("CustomResourceDefinition", None, SERVICE_MONITOR_CRD)
            _crd_cache[SERVICE_MONITOR_CRD] = (time.monotonic(), installed)
        return installed


def served_versions(kube: Kube) -> frozenset[str]:
    return discovery.SERVED.get(kube.served_group_versions)


def ensure_api_token(kube: Kube, bot: dict[str, Any], labels: dict[str, str]) -> bool:
    """Creates the Bot's API token Secret unless it exists; True when it was created.
    Never overwritten: the pods and the Bot's clients hold the token."""
    namespace, name = bot["metadata"]["namespace"], builders.api_token_secret_name(bot["metadata"]["name"])
    if kube.exists("Secret", namespace, name):
        return False
    try:
        kube.create(builders.api_token_secret(bot, labels, secrets.token_hex(32)))
    except KubeError as error:
        if error.status == 409:  # created meanwhile (another reconcile): theirs stands
            return False
        raise
    metrics.CHILD_WRITES.labels("Secret", "created").inc()
    return True


def list_children(kube: Kube, bot: dict[str, Any], served: frozenset[str]) -> list[drift.LiveChild]:
    """The Bot's live children of every served kind, by label (ownership is checked by
    the caller); the operator's kopf indexes make this unnecessary there."""
    labels = {drift.BOT_LABEL: builders.bot_name(bot["metadata"]["name"]), drift.MANAGED_BY_LABEL: builders.MANAGED_BY}
    found = []
    for kind in CHILD_KINDS:
        if RESOURCES[kind].group_version in served:
            found += [drift.live_child(obj, kind) for obj in kube.list_objects(kind, bot["metadata"]["namespace"], labels)]
    return found


def sync_child(
    kube: Kube, desired: dict[str, Any], live: drift.LiveChild | None, cache: drift.SyncCache, on_child_event: bool
) -> str | None:
    """Brings one child to its desired state; returns why it wrote ("Created",
    "Updated", "Restored"), or None when it was in sync.

    In sync by the cache: no request. Otherwise a dry-run apply says what the object
    would become; only a difference from the live object (both in the server's form)
    is written, with a real apply."""
    kind, metadata = desired["kind"], desired["metadata"]
    name, namespace = metadata["name"], metadata["namespace"]
    want = drift.desired_hash(desired)
    if live is None and not on_child_event and cache.known_uid(kind, namespace, name):
        # Written by the operator, but missing from the index: the index may lag behind
        # that write, or the child was deleted. Ask rather than guess.
        fresh = kube.get(kind, namespace, name)
        live = drift.live_child(fresh, kind) if fresh else None
    if live is not None and live.legacy_owner:
        live = upgrade_ownership(kube, desired, live)
    if live is not None:
        if drift.in_sync(cache.get(live.uid), want, live):
            return None
        dry_run = kube.apply(desired, dry_run=True) or {}
        result = drift.fingerprint(dry_run)
        if result == live.fingerprint:
            metrics.DRY_RUNS.labels(kind, "in_sync").inc()
            cache.record_live(want, live)
            return None
        if (dry_run.get("metadata") or {}).get("resourceVersion", "") != live.resource_version:
            # The copy at hand is older than the server's object: compare with that.
            fresh = kube.get(kind, namespace, name)
            if fresh is not None and drift.fingerprint(fresh) == result:
                metrics.DRY_RUNS.labels(kind, "in_sync").inc()
                cache.record(want, fresh)
                return None
            live = drift.live_child(fresh, kind) if fresh is not None else None
        metrics.DRY_RUNS.labels(kind, "drift").inc()
    reason = drift.write_reason(live, desired, on_child_event)
    applied = kube.apply(desired)
    if applied:
        cache.record(want, applied)
    metrics.CHILD_WRITES.labels(kind, reason.lower()).inc()
    return reason


def upgrade_ownership(kube: Kube, desired: dict[str, Any], live: drift.LiveChild) -> drift.LiveChild | None:
    """Hands the fields the operator's pre-apply writes own to its apply manager (once
    per child, guarded by the resourceVersion), so that dropping a field from the Bot
    removes it from the child. Returns the child as it now is."""
    kind, name, namespace = desired["kind"], desired["metadata"]["name"], desired["metadata"]["namespace"]
    fresh = kube.get(kind, namespace, name)
    if fresh is None:
        return None
    if drift.has_legacy_owner(fresh):
        operations = [
            {"op": "test", "path": "/metadata/resourceVersion", "value": fresh["metadata"].get("resourceVersion", "")},
            {"op": "replace", "path": "/metadata/managedFields", "value": drift.upgraded_managed_fields(fresh, FIELD_MANAGER)},
        ]
        fresh = kube.json_patch(kind, namespace, name, operations) or fresh
        metrics.CHILD_WRITES.labels(kind, "ownership").inc()
    return drift.live_child(fresh, kind)


def prune(
    kube: Kube, bot: dict[str, Any], live: Iterable[drift.LiveChild], desired: list[dict[str, Any]], cache: drift.SyncCache, writes: Writes
) -> list[decisions.Problem]:
    metadata = bot["metadata"]
    keys = [(o["kind"], o["metadata"]["name"]) for o in desired]
    problems = []
    for orphan in drift.orphans(live, keys, builders.bot_name(metadata["name"]), metadata["uid"], builders.MANAGED_BY):
        try:
            kube.delete(orphan.kind, metadata["namespace"], orphan.name, uid=orphan.uid)
        except KubeError as error:
            if error.status != 409:  # 409: the uid precondition failed, a namesake stands there
                problems.append(decisions.Problem("PruneFailed", f"{orphan.kind} {orphan.name}: {error}"))
            continue
        cache.forget(orphan.uid)
        metrics.CHILD_WRITES.labels(orphan.kind, "pruned").inc()
        writes.add("Pruned", f"{orphan.kind} {orphan.name}")
    return problems


def apply_all(
    kube: Kube, bot: dict[str, Any], new: bool, children: ChildLister | None, cache: drift.SyncCache, writes: Writes,
    tracks: dict[str, Any] | None = None,
) -> tuple[list[dict[str, Any]], list[decisions.Problem]]:
    """Applies every desired child the server can take and prunes the rest; returns
    the desired objects and the problems met."""
    served = served_versions(kube)
    desired = builders.desired_objects(bot, service_monitor_crd=service_monitor_crd_installed(kube), tracks=tracks)
    available, unavailable = discovery.split_by_api(desired, served)
    problems = [p for p in [discovery.api_problem(unavailable)] if p]
    if builders.needs_generated_token(bot["spec"]) and ensure_api_token(kube, bot, builders.bot_labels(desired)):
        writes.add("Created", f"Secret {builders.api_token_secret_name(bot['metadata']['name'])}")
    # A Bot just created has no children: nothing to read, compare or prune.
    live = {} if new else {c.key: c for c in (children() if children is not None else list_children(kube, bot, served))}
    for obj in available:
        key = (obj["kind"], obj["metadata"]["name"])
        try:
            action = sync_child(kube, obj, live.get(key), cache, on_child_event=False)
        except KubeError as error:
            problems.append(decisions.Problem("ApplyFailed", f"{key[0]} {key[1]}: {error}"))
            continue
        if action:
            writes.add(action, f"{key[0]} {key[1]}")
    if not new:
        problems += prune(kube, bot, live.values(), desired, cache, writes)
    return desired, problems


def observe_components(
    kube: Kube, bot: dict[str, Any], desired: list[dict[str, Any]], read_deployment: DeploymentReader | None = None
) -> dict[str, decisions.ComponentState | None]:
    """Each component's Deployment state, read from the API or from a cache. The names
    come from the rendered objects (or, unrendered, from the chart's naming rule)."""
    name, namespace, spec = bot["metadata"]["name"], bot["metadata"]["namespace"], bot["spec"]
    if decisions.name_errors(name):  # its children's names would be another Bot's
        return {}
    read = read_deployment or (lambda ns, deployment: kube.get("Deployment", ns, deployment))
    names = builders.deployments_by_component(desired) if desired else {
        component: builders.child_name(name, component)
        for component, key in decisions.COMPONENT_SPEC_KEYS.items()
        if component not in decisions.OPTIONAL_COMPONENTS or (spec.get(key) or {}).get("enabled", True)
    }
    states: dict[str, decisions.ComponentState | None] = {}
    for component, spec_key in decisions.COMPONENT_SPEC_KEYS.items():
        if component not in names:
            continue
        autoscaling = (spec.get(spec_key) or {}).get("autoscaling") or {}
        minimum = autoscaling.get("minReplicas") if autoscaling.get("enabled") else None
        states[component] = decisions.component_state(read(namespace, names[component]), minimum)
    # A rollout's canary track (rasa-canary, model-serving-canary) while it is rendered.
    for component in sorted(set(names) - set(decisions.COMPONENT_SPEC_KEYS)):
        if component.endswith("-canary"):
            states[component] = decisions.component_state(read(namespace, names[component]), None)
    return states


def _observe(started: float, problems: list[decisions.Problem]) -> None:
    metrics.RECONCILE_DURATION.observe(time.perf_counter() - started)
    metrics.RECONCILES.labels("problem" if problems else "ok").inc()
    for problem in problems:
        metrics.RECONCILE_ERRORS.labels(problem.reason).inc()


def reconcile(
    kube: Kube,
    body: dict[str, Any],
    new: bool = False,
    children: ChildLister | None = None,
    read_deployment: DeploymentReader | None = None,
    cache: drift.SyncCache = drift.CACHE,
    analyse: rollout.Analyser = rollout.analyse_with_prometheus,
    clock: Callable[[], float] = time.time,
) -> Outcome:
    """A full reconcile: on create, on a spec change, on resume, on every resync and on
    every rollout tick."""
    started = time.perf_counter()
    bot = defaulted(body)
    writes = Writes()
    desired: list[dict[str, Any]] = []
    problems = decisions.spec_problems(body)
    tick: rollout.RolloutTick | None = None
    read = read_deployment or (lambda ns, deployment: kube.get("Deployment", ns, deployment))
    if not problems:
        try:
            tick = rollout.tick(bot, now=clock(), read_deployment=read, analyse=analyse)
        except SpecError as error:
            problems = [decisions.Problem("InvalidSpec", str(error))]
        except KubeError as error:
            problems = [decisions.Problem("APIError", f"the API server refused a request: {error}")]
    if not problems:
        try:
            problems = missing_secrets(kube, bot["metadata"]["namespace"], bot["spec"])
            if not problems:
                desired, problems = apply_all(kube, bot, new, children, cache, writes, tracks=tick.values if tick else None)
        except KubeError as error:  # a read failed: a problem for this round, retried
            problems.append(decisions.Problem("APIError", f"the API server refused a request: {error}"))
    status = decisions.derive_status(bot, observe_components(kube, bot, desired, read), problems, now_iso())
    with_rollout(status, bot.get("status"), tick)
    _observe(started, problems)
    return Outcome(status=status, events=writes.events(), problems=problems,
                   rollout_events=tick.events if tick else [], clear_rollout_command=tick.command_seen if tick else None,
                   rollout_active=bool(tick and tick.needs_ticks))


def with_rollout(status: dict[str, Any], old: dict[str, Any] | None, tick: rollout.RolloutTick | None) -> None:
    """Adds the rollout's part of the status (status.rollout, status.stableModel and the
    Promoted condition): from this tick, or, for a reconcile that ran none (a child's
    event), as the last one wrote it."""
    old = old or {}
    rollout_status = tick.rollout_status if tick else old.get("rollout")
    stable_model = tick.stable_model if tick else old.get("stableModel")
    if stable_model is not None:
        status["stableModel"] = stable_model
    if rollout_status:
        status["rollout"] = rollout_status
        promoted = rollout_condition(rollout_status, status.get("observedGeneration", 1))
        status["conditions"] = decisions.merge_conditions(old.get("conditions") or [], [*status["conditions"], promoted], now_iso())


def rollout_condition(rollout: dict[str, Any], generation: int) -> dict[str, Any]:
    """`Promoted` (as Flagger's): True once the canary's model is the stable one; while a
    rollout runs or after a rollback False, with the phase as reason and the rollout's
    message (a rollback's names the failing check and its value)."""
    phase = rollout.get("phase", "")
    reason = {"Failed": "RolledBack", "Succeeded": "Succeeded"}.get(phase, phase or "Unknown")
    # Withdrawn (spec.model set back to the stable version): nothing was promoted.
    cancelled = phase == "Succeeded" and rollout.get("canaryVersion") == rollout.get("stableVersion")
    message = rollout.get("message") or f"rollout of model {rollout.get('canaryVersion')}: {phase}"
    return decisions.condition("Promoted", phase == "Succeeded" and not cancelled, "Cancelled" if cancelled else reason,
                               message[:32768], generation)


def bot_still_exists(kube: Kube, bot: dict[str, Any]) -> bool:
    """Whether the Bot itself is still there (and not being deleted): a child deleted
    by the garbage collector after its Bot must not be recreated."""
    live = kube.get("Bot", bot["metadata"]["namespace"], bot["metadata"]["name"])
    if live is None:
        return False
    metadata = live.get("metadata") or {}
    return metadata.get("uid") == bot["metadata"].get("uid") and not metadata.get("deletionTimestamp")


def reconcile_child(
    kube: Kube,
    body: dict[str, Any],
    kind: str,
    name: str,
    live: dict[str, Any] | None,
    read_deployment: DeploymentReader | None = None,
    cache: drift.SyncCache = drift.CACHE,
) -> Outcome | None:
    """The cheap path for an event on one child: restore that child if it drifted or
    was deleted, and refresh the Bot's status when a Deployment changed. The problems
    the last full reconcile found are carried over (the resync re-checks them); a Bot
    whose problems block applying gets its status refreshed only. None when there is
    nothing to publish."""
    started = time.perf_counter()
    if decisions.spec_problems(body):
        return None
    bot = defaulted(body)
    carried = decisions.carried_problems(body.get("status"))
    problems: list[decisions.Problem] = []
    desired: list[dict[str, Any]] = []
    action = None
    if not decisions.blocks_apply(carried):
        try:
            tracks = rollout.tracks_now(bot, time.time())
        except SpecError:  # rendering without the tracks would put the canary's model on stable
            return None
        desired = builders.desired_objects(bot, service_monitor_crd=service_monitor_crd_installed(kube), tracks=tracks)
        target = next((o for o in desired if o["kind"] == kind and o["metadata"]["name"] == name), None)
        if target is None:  # labelled like ours but not desired: the full reconcile prunes
            return None
        if live is None and not bot_still_exists(kube, bot):
            return None
        try:
            action = sync_child(kube, target, drift.live_child(live, kind) if live else None, cache, on_child_event=True)
        except KubeError as error:
            problems.append(decisions.Problem("ApplyFailed", f"{kind} {name}: {error}"))
    if kind != "Deployment" and not action and not problems:
        return None
    writes = Writes()
    if action:
        writes.add(action, f"{kind} {name}")
    all_problems = carried + problems
    status = decisions.derive_status(bot, observe_components(kube, bot, desired, read_deployment), all_problems, now_iso())
    with_rollout(status, body.get("status"), None)
    _observe(started, problems)
    return Outcome(status=status, events=writes.events(), problems=all_problems)


class BotLocks:
    """One lock per Bot: kopf's handlers, its child events and the resync loop may
    otherwise reconcile one Bot in two threads at once."""

    def __init__(self) -> None:
        self._locks: dict[tuple[str, str], threading.Lock] = {}
        self._guard = threading.Lock()

    def get(self, namespace: str, name: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault((namespace, name), threading.Lock())

    def forget(self, namespace: str, name: str) -> None:
        with self._guard:
            self._locks.pop((namespace, name), None)
