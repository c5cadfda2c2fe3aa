"""The gateway's Prometheus metrics, on a registry per app so that several apps (tests,
or a restart inside one process) never share counters."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from botfleet_gateway.routing import Routing

# Rasa turns take from tens of milliseconds to many seconds (custom actions, LLM calls).
_DURATION_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class GatewayMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "botfleet_gateway_requests", "Requests forwarded to Rasa, by answer.", ["channel", "track", "code"], registry=r
        )
        self.request_duration = Histogram(
            "botfleet_gateway_request_duration_seconds",
            "Time from request to Rasa's answer, gateway included.",
            ["channel", "track"],
            buckets=_DURATION_BUCKETS,
            registry=r,
        )
        self.assignments = Counter(
            "botfleet_gateway_assignments", "New conversations assigned to a track.", ["channel", "track"], registry=r
        )
        self.track_moves = Counter(
            "botfleet_gateway_track_moves",
            "Started conversations moved between tracks (canary gone: rollback, promoted, new_rollout).",
            ["from_track", "to_track", "reason"],
            registry=r,
        )
        self.rejected = Counter(
            "botfleet_gateway_rejected",
            "Requests the gateway answered itself (413 too large, 400 malformed, 404 unknown path, 405 method).",
            ["channel", "reason"],
            registry=r,
        )
        self.routing_info = Gauge(
            "botfleet_gateway_routing_info", "The routing in force (1 for its rollout and state).", ["rollout_id", "state"], registry=r
        )
        self.canary_weight = Gauge(
            "botfleet_gateway_canary_weight", "Share of new conversations the canary gets now, in percent.", registry=r
        )
        self.dependency_errors = Counter(
            "botfleet_gateway_dependency_errors",
            "Failed calls to what the gateway depends on (redis, rasa_stable, rasa_canary).",
            ["dependency"],
            registry=r,
        )
        self.routing_reload_errors = Counter(
            "botfleet_gateway_routing_reload_errors",
            "Routing file changes that could not be read or were invalid (the last good routing stays).",
            registry=r,
        )

    def set_routing(self, routing: Routing) -> None:
        self.routing_info.clear()
        self.routing_info.labels(rollout_id=routing.canary.rollout_id or "", state=routing.canary.state).set(1)
        self.canary_weight.set(routing.effective_weight)
