"""Prometheus metrics of the action server."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

ACTION_DURATION = Histogram(
    "botfleet_action_duration_seconds",
    "Custom action run time.",
    ["action"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
ACTION_ERRORS = Counter(
    "botfleet_action_errors_total",
    "Custom actions that hit an error (unhandled, or a dependency failure they degraded on).",
    ["action", "error"],
)
HANDOFFS = Counter("botfleet_handoffs_total", "Conversations handed to a human agent.")
HANDOFF_RELEASES = Counter("botfleet_handoff_releases_total", "Conversations agents handed back.")
FEEDBACK = Counter("botfleet_feedback_total", "Conversation ratings received.", ["rating"])
DEPENDENCY_ERRORS = Counter(
    "botfleet_dependency_errors_total",
    "Failed calls to a dependency (the bot degraded instead of failing the turn).",
    ["dependency"],
)
