"""Prometheus metrics of the operator."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

RECONCILES = Counter("botfleet_operator_reconciles_total", "Bot reconciliations, by result.", ["result"])
RECONCILE_ERRORS = Counter("botfleet_operator_reconcile_errors_total", "Failed reconciliations, by reason.", ["reason"])
RECONCILE_DURATION = Histogram(
    "botfleet_operator_reconcile_duration_seconds",
    "Time to reconcile one Bot.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
CHILD_WRITES = Counter("botfleet_operator_child_writes_total", "Children created or updated.", ["kind", "action"])
BOTS = Gauge("botfleet_operator_bots", "Bots by phase.", ["phase"])
