"""Prometheus metrics of the operator."""

from __future__ import annotations

from typing import Any

from prometheus_client import Counter, Gauge, Histogram

RECONCILES = Counter("botfleet_operator_reconciles_total", "Bot reconciliations, by result.", ["result"])
RECONCILE_ERRORS = Counter("botfleet_operator_reconcile_errors_total", "Failed reconciliations, by reason.", ["reason"])
RECONCILE_DURATION = Histogram(
    "botfleet_operator_reconcile_duration_seconds",
    "Time to reconcile one Bot.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
CHILD_WRITES = Counter(
    "botfleet_operator_child_writes_total",
    "Writes to children (server-side applies and deletions), by why: created, updated, restored, pruned.",
    ["kind", "action"],
)
DRY_RUNS = Counter(
    "botfleet_operator_child_dry_runs_total",
    "Dry-run applies of children, by result: in_sync (no write followed) or drift.",
    ["kind", "result"],
)
RESYNCS = Counter("botfleet_operator_resyncs_total", "Periodic full reconciles of Bots, by result.", ["result"])
BOTS = Gauge("botfleet_operator_bots", "Bots by phase.", ["phase"])

# Per-Bot state for alerts and dashboards. The scrape target's own `namespace` label
# names the operator's namespace, so the Bot's namespace is `bot_namespace`.
BOT_LABELS = ["bot_namespace", "bot"]
BOT_READY = Gauge("botfleet_bot_ready", "1 when the Bot's Ready condition is True.", BOT_LABELS)
BOT_REPLICAS_READY = Gauge(
    "botfleet_bot_replicas_ready", "Ready pods per Bot component.", [*BOT_LABELS, "component"]
)
BOT_REPLICAS_DESIRED = Gauge(
    "botfleet_bot_replicas_desired", "Desired pods per Bot component.", [*BOT_LABELS, "component"]
)
BOT_INFO = Gauge("botfleet_bot_info", "The model version each Bot serves (always 1).", [*BOT_LABELS, "model_version"])


# Label sets each Bot has exported, so a changed or deleted Bot leaves no stale series.
_bot_series: dict[tuple[str, str], list[tuple[Gauge, tuple[str, ...]]]] = {}


# A Bot's model rollout (Canary strategy), from status.rollout.
ROLLOUT_PHASES = ("Initializing", "Progressing", "Paused", "Promoting", "Succeeded", "Failed")
ROLLOUT_PHASE = Gauge(
    "botfleet_rollout_phase",
    "1 for the phase of the Bot's last model rollout (Canary strategy), 0 for the others.",
    [*BOT_LABELS, "phase", "canary_version"],
)
ROLLOUT_WEIGHT = Gauge("botfleet_rollout_weight", "The canary's share of new conversations, in percent.", BOT_LABELS)
ROLLOUT_FAILED_CHECKS = Gauge("botfleet_rollout_failed_checks", "Failed analysis checks of the rollout so far.", BOT_LABELS)
ROLLOUT_ANALYSIS = Gauge(
    "botfleet_rollout_analysis",
    "The last analysis of each check: 1 for its result (pass, fail, unknown), 0 for the others.",
    [*BOT_LABELS, "metric", "result"],
)
ROLLOUT_ANALYSIS_VALUE = Gauge(
    "botfleet_rollout_analysis_value",
    "The value each check measured at the last analysis, on the canary and the stable track.",
    [*BOT_LABELS, "metric", "track"],
)


def observe_bot(namespace: str, name: str, status: dict[str, Any]) -> None:
    """Replaces the Bot's per-Bot series with the ones its new status implies."""
    forget_bot(namespace, name)
    series: list[tuple[Gauge, tuple[str, ...]]] = []

    def put(gauge: Gauge, labels: tuple[str, ...], value: float) -> None:
        gauge.labels(*labels).set(value)
        series.append((gauge, labels))

    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
    put(BOT_READY, (namespace, name), 1 if ready else 0)
    for component, replicas in (status.get("components") or {}).items():
        put(BOT_REPLICAS_READY, (namespace, name, component), replicas["readyReplicas"])
        put(BOT_REPLICAS_DESIRED, (namespace, name, component), replicas["desiredReplicas"])
    if status.get("currentModelVersion"):
        put(BOT_INFO, (namespace, name, str(status["currentModelVersion"])), 1)
    rollout = status.get("rollout") or {}
    if rollout.get("phase"):
        canary = str(rollout.get("canaryVersion") or "")
        for phase in ROLLOUT_PHASES:
            put(ROLLOUT_PHASE, (namespace, name, phase, canary), 1 if rollout["phase"] == phase else 0)
        put(ROLLOUT_WEIGHT, (namespace, name), rollout.get("canaryWeight") or 0)
        put(ROLLOUT_FAILED_CHECKS, (namespace, name), rollout.get("failedChecks") or 0)
        for metric, result in (rollout.get("lastAnalysis") or {}).items():
            for outcome in ("pass", "fail", "unknown"):
                put(ROLLOUT_ANALYSIS, (namespace, name, metric, outcome), 1 if result.get("status") == outcome else 0)
            for track, key in (("canary", "value"), ("stable", "stableValue")):
                if result.get(key) is not None:
                    put(ROLLOUT_ANALYSIS_VALUE, (namespace, name, metric, track), float(result[key]))
    _bot_series[(namespace, name)] = series


def forget_bot(namespace: str, name: str) -> None:
    for gauge, labels in _bot_series.pop((namespace, name), []):
        gauge.remove(*labels)
