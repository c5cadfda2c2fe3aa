"""Prometheus metrics of the Rasa server (exposed at /metrics by the `ops` channel)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

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
# Rasa's side of each custom-action call: per track, where the shared action server's
# own counters cannot tell which model made the call (canary analysis compares them).
ACTION_SERVER_CALLS = Counter(
    "botfleet_action_server_calls_total",
    "Custom-action calls to the action server, by outcome (ok, rejected, error).",
    ["outcome"],
)
ACTION_SERVER_ERRORS = Counter(
    "botfleet_action_server_errors_total",
    "Custom-action calls that failed (connection error, timeout, 5xx, invalid response).",
)
HANDOFFS_STARTED = Counter(
    "botfleet_handoffs_started_total",
    "Conversations this server handed to a human agent (the handoff slot became true).",
)
LOCK_WAIT = Histogram(
    "botfleet_lock_wait_seconds",
    "Time a message waited for its conversation's lock (earlier messages of the same conversation).",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
LOCK_TICKETS_LOST = Counter(
    "botfleet_lock_tickets_lost_total",
    "Conversation lock tickets that expired before their owner finished (a stalled process).",
)
# With several Sanic workers each process has its own model: "liveall" keeps one series
# per live worker (pid label), so min() shows a worker that failed to load.
MODEL_LOADED = Gauge(
    "botfleet_model_loaded", "1 when this server has a model loaded and serving.", multiprocess_mode="liveall"
)
MODEL_INFO = Gauge(
    "botfleet_model_info", "The loaded model (always 1).", ["model_id"], multiprocess_mode="liveall"
)
MODEL_LOAD_FAILURES = Counter(
    "botfleet_model_load_failures_total", "Server starts that ended without a loaded model."
)
# RemoteIntentClassifier's calls to the model-serving service (BentoML).
MODEL_SERVING_REQUESTS = Counter(
    "botfleet_model_serving_requests_total",
    "Calls to the model-serving service, by outcome: one per HTTP attempt (ok, timeout, "
    "connection_error, http_error, bad_response; a retry is a second attempt), and "
    "circuit_open for a classification not sent because the circuit breaker was open.",
    ["outcome"],
)
MODEL_SERVING_LATENCY = Histogram(
    "botfleet_model_serving_latency_seconds",
    "Duration of each HTTP attempt to the model-serving service, failed ones included.",
    buckets=(0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0),
)
# Per worker process: each has its own breaker, so "liveall" keeps one series per pid.
MODEL_SERVING_CIRCUIT_STATE = Gauge(
    "botfleet_model_serving_circuit_state",
    "Circuit breaker in front of the model-serving service: 0 closed, 1 half-open, 2 open.",
    multiprocess_mode="liveall",
)
NLU_DEGRADED = Counter(
    "botfleet_nlu_degraded_total",
    "Messages whose intent came from the in-process fallback classifier because the "
    "model-serving service was unavailable, by reason (a failed outcome, not_configured, "
    "or error for an unexpected exception in the client).",
    ["reason"],
)
