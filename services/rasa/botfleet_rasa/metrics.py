"""Prometheus metrics of the Rasa server (exposed at /metrics by the `ops` channel)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

MESSAGES = Counter(
    "botfleet_messages_total",
    "Messages handled, by channel and direction (in: from users, out: bot utterances).",
    ["channel", "direction"],
)
INTENTS = Counter("botfleet_intents_total", "Predicted intents after fallback.", ["intent"])
INTENT_CONFIDENCE = Histogram(
    "botfleet_intent_confidence",
    "Confidence of the top classifier intent, before fallback.",
    buckets=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.65, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0),
)
FALLBACKS = Counter(
    "botfleet_nlu_fallbacks_total",
    "Messages routed to the fallback, by reason (low_confidence, ambiguous, unsupported_language).",
    ["reason"],
)
PII_REDACTIONS = Counter(
    "botfleet_pii_redactions_total", "PII findings redacted from user messages.", ["kind"]
)
LANGUAGES = Counter(
    "botfleet_detected_languages_total", "Languages detected in user messages.", ["language"]
)
TURN_DURATION = Histogram(
    "botfleet_turn_duration_seconds",
    "Time from receiving a user message to saving the tracker after the bot's reply.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
HANDOFF_SUPPRESSED = Counter(
    "botfleet_handoff_suppressed_replies_total",
    "User messages the bot stayed silent on because a human agent has the conversation.",
)
ARCHIVED_EVENTS = Counter(
    "botfleet_tracker_archived_events_total",
    "Tracker events moved from the active window to the archive.",
)
DEPENDENCY_ERRORS = Counter(
    "botfleet_dependency_errors_total",
    "Failed calls to a dependency (the bot degraded instead of failing the turn).",
    ["dependency"],
)
