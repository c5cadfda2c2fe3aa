"""Intent rankings from the model-serving service (BentoML), with the in-process
classifier before it as the fallback.

Pipeline position: after an in-process intent classifier (LogisticRegressionClassifier,
DIET, ...) and before FallbackClassifier. When the service answers, its intent and
ranking replace the in-process prediction; when it cannot (timeout, connection refused,
an HTTP error, a malformed answer, or the circuit breaker is open), the in-process
prediction stays, the message says why under `intent_source`, and
botfleet_nlu_degraded_total counts it. The service never fails a turn and never
delays model loading or readiness: nothing is called until the first message.

Service API: POST {url}/classify {"texts": [...]} -> one item per text,
{"intent": {"name", "confidence"}, "intent_ranking": [{"name", "confidence"}, ...]}.

The URL comes from the `url` setting or, when that is empty, from $BOTFLEET_NLU_URL when
the model loads. It is left out of the bot's config on purpose: a model is trained once
and deployed to environments whose endpoints differ, and Rasa would expand a
${VAR} in config.yml at training time and bake the value into the model.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from typing import Any, Dict, List, Optional, Tuple

import urllib3
from rasa.engine.graph import ExecutionContext, GraphComponent
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.engine.storage.resource import Resource
from rasa.engine.storage.storage import ModelStorage
from rasa.shared.nlu.constants import (
    INTENT,
    INTENT_NAME_KEY,
    INTENT_RANKING_KEY,
    PREDICTED_CONFIDENCE_KEY,
    TEXT,
)
from rasa.shared.nlu.training_data.message import Message

from botfleet_rasa import metrics
from botfleet_rasa.circuit import CircuitBreaker, CircuitState, Clock, RetryBudget

logger = logging.getLogger(__name__)

URL_ENV = "BOTFLEET_NLU_URL"
# Output property: where the intent came from, {"classifier": "remote" | "fallback",
# "outcome": ...}. Shows up in /model/parse and in the tracker's parse data.
INTENT_SOURCE = "intent_source"

OK = "ok"
TIMEOUT = "timeout"
CONNECTION_ERROR = "connection_error"
HTTP_ERROR = "http_error"
BAD_RESPONSE = "bad_response"
CIRCUIT_OPEN = "circuit_open"
NOT_CONFIGURED = "not_configured"
UNEXPECTED_ERROR = "error"

# Service-side trouble that another attempt may not meet (a reset keep-alive connection,
# a restarting pod behind the Service, a timeout). A 4xx or a malformed answer would be
# the same again, and 429 asks for less load, not more.
_RETRYABLE_STATUS = {500, 502, 503, 504}
# Confidences are float32 softmax outputs on the service side: allow rounding noise.
_CONFIDENCE_SLACK = 1e-4


class BadResponse(ValueError):
    """The service answered 200 with something that is not a ranking per text."""


def _label(value: Any) -> Dict[str, Any]:
    if not isinstance(value, dict):
        raise BadResponse(f"expected an object with name and confidence, got {type(value).__name__}")
    name, confidence = value.get("name"), value.get("confidence")
    if not isinstance(name, str) or not name:
        raise BadResponse("intent name must be a non-empty string")
    if isinstance(confidence, bool) or not isinstance(confidence, (int, float)) or not math.isfinite(confidence):
        raise BadResponse(f"confidence of {name!r} must be a number")
    if not -_CONFIDENCE_SLACK <= confidence <= 1 + _CONFIDENCE_SLACK:
        raise BadResponse(f"confidence of {name!r} is outside [0, 1]")
    return {INTENT_NAME_KEY: name, PREDICTED_CONFIDENCE_KEY: min(max(float(confidence), 0.0), 1.0)}


def parse_predictions(
    payload: Any, count: int, ranking_length: int
) -> List[Tuple[Dict[str, Any], List[Dict[str, Any]]]]:
    """(intent, ranking) per text in Rasa's shapes, or BadResponse. The ranking is sorted
    by confidence and, like Rasa's classifiers, cut to `ranking_length` (0: all)."""
    if not isinstance(payload, list) or len(payload) != count:
        raise BadResponse(f"expected a list of {count} predictions")
    predictions = []
    for item in payload:
        if not isinstance(item, dict):
            raise BadResponse("each prediction must be an object")
        intent = _label(item.get("intent"))
        raw_ranking = item.get("intent_ranking")
        if raw_ranking is None:
            raw_ranking = [item["intent"]]
        if not isinstance(raw_ranking, list):
            raise BadResponse("intent_ranking must be a list")
        ranking = sorted((_label(r) for r in raw_ranking), key=lambda r: -r[PREDICTED_CONFIDENCE_KEY])
        if ranking_length > 0:
            ranking = ranking[:ranking_length]
        predictions.append((intent, ranking))
    return predictions


def _failure_outcome(error: Exception) -> str:
    # NewConnectionError (refused, unresolvable) subclasses ConnectTimeoutError in
    # urllib3 2, so it is checked before the timeouts.
    if isinstance(error, urllib3.exceptions.NewConnectionError):
        return CONNECTION_ERROR
    if isinstance(error, urllib3.exceptions.TimeoutError):
        return TIMEOUT
    return CONNECTION_ERROR


@DefaultV1Recipe.register(
    [DefaultV1Recipe.ComponentType.INTENT_CLASSIFIER], is_trainable=False
)
class RemoteIntentClassifier(GraphComponent):
    @staticmethod
    def get_default_config() -> Dict[str, Any]:
        return {
            # Base URL of the model-serving service; empty: $BOTFLEET_NLU_URL at load.
            "url": "",
            # Per HTTP attempt, connect and response together.
            "timeout_ms": 300,
            # Further attempts after a timeout, a connection error or a 5xx ...
            "retries": 1,
            # ... all within this much time per classification, first attempt included.
            "retry_budget_ms": 400,
            # Consecutive failed classifications that open the circuit ...
            "circuit_failure_threshold": 5,
            # ... and how long it stays open before one probe is let through.
            "circuit_reset_seconds": 30,
            # Ranking entries kept, as Rasa's classifiers do (0: all).
            "ranking_length": 10,
            # Longer texts are cut: the service rejects texts over 2,000 characters (a
            # 4xx would count as a failure), and its encoder reads far fewer anyway.
            "max_text_chars": 2000,
            # Kept-alive connections per worker process.
            "pool_maxsize": 4,
        }

    def __init__(self, config: Dict[str, Any], clock: Clock = time.monotonic) -> None:
        self.config = {**self.get_default_config(), **config}
        url = (self.config["url"] or os.environ.get(URL_ENV, "")).strip().rstrip("/")
        self.url = url or None
        self._classify_url = f"{url}/classify"
        self._clock = clock
        self._timeout = self.config["timeout_ms"] / 1000
        self._budget = self.config["retry_budget_ms"] / 1000
        self._retries = int(self.config["retries"])
        RetryBudget(self._timeout, self._retries, self._budget)  # validates the settings
        self.circuit = CircuitBreaker(
            int(self.config["circuit_failure_threshold"]),
            float(self.config["circuit_reset_seconds"]),
            clock=clock,
            on_transition=self._on_transition,
        )
        self._last_failure: Optional[str] = None
        # Why a pooled *synchronous* client: Rasa 3.6 calls process() synchronously on
        # the Sanic event loop (the graph runs on dask's synchronous scheduler inside the
        # async message handler), so nothing here can be awaited, and an async client
        # would need a second loop in a thread that this thread then blocks on anyway.
        # What bounds the stall instead: keep-alive connections (no TCP handshake per
        # message), a total timeout per attempt, retries only within retry_budget_ms, and
        # the circuit breaker, which skips the call entirely while the service is down.
        # urllib3 rather than requests: urllib3.Timeout(total=...) caps connect and
        # response together (requests only has per-phase timeouts), with less overhead
        # per call; requests is built on it anyway. Retries are ours, not urllib3's.
        self._http = urllib3.PoolManager(
            num_pools=2, maxsize=int(self.config["pool_maxsize"]), block=False, retries=False
        )
        metrics.MODEL_SERVING_CIRCUIT_STATE.set(int(CircuitState.CLOSED))
        if self.url is None:
            # Not an error that fails the model load: readiness must not depend on the
            # service, and the in-process classifier still answers.
            logger.warning(
                "RemoteIntentClassifier has no url and %s is not set: every message uses "
                "the in-process fallback classifier",
                URL_ENV,
            )

    @classmethod
    def create(
        cls,
        config: Dict[str, Any],
        model_storage: ModelStorage,
        resource: Resource,
        execution_context: ExecutionContext,
    ) -> RemoteIntentClassifier:
        return cls(config)

    def process(self, messages: List[Message]) -> List[Message]:
        pending = [m for m in messages if m.get(TEXT)]
        if not pending:
            return messages
        if self.url is None:
            self._degrade(pending, NOT_CONFIGURED)
            return messages
        if not self.circuit.allow():
            metrics.MODEL_SERVING_REQUESTS.labels(CIRCUIT_OPEN).inc()
            self._degrade(pending, CIRCUIT_OPEN)
            return messages
        # The Preprocessor's output: normalised and PII-redacted, so no raw card number,
        # e-mail or phone number leaves the Rasa pod.
        limit = int(self.config["max_text_chars"])
        try:
            outcome, predictions = self._classify([m.get(TEXT)[:limit] for m in pending])
        except Exception:
            # A bug here must not fail the user's turn (and must report to the breaker,
            # or a half-open probe would never finish). Once the circuit opens, this is
            # logged at most once per reset period.
            logger.exception("RemoteIntentClassifier failed unexpectedly")
            outcome, predictions = UNEXPECTED_ERROR, None
        if predictions is None:
            self._last_failure = outcome
            self.circuit.record_failure()
            self._degrade(pending, outcome)
            return messages
        self.circuit.record_success()
        for message, (intent, ranking) in zip(pending, predictions, strict=True):
            message.set(INTENT, intent, add_to_output=True)
            message.set(INTENT_RANKING_KEY, ranking, add_to_output=True)
            message.set(INTENT_SOURCE, {"classifier": "remote", "outcome": OK}, add_to_output=True)
        return messages

    def _classify(self, texts: List[str]) -> Tuple[str, Optional[List[Any]]]:
        """The last attempt's outcome, and the predictions when it succeeded."""
        body = json.dumps({"texts": texts}).encode()
        budget = RetryBudget(self._timeout, self._retries, self._budget, clock=self._clock)
        outcome = TIMEOUT  # if even the first attempt had no time left
        while (timeout := budget.next_timeout()) is not None:
            outcome, predictions, retryable = self._attempt(body, len(texts), timeout)
            if predictions is not None or not retryable:
                return outcome, predictions
        return outcome, None

    def _attempt(self, body: bytes, count: int, timeout: float) -> Tuple[str, Optional[List[Any]], bool]:
        started = time.perf_counter()
        try:
            response = self._http.request(
                "POST",
                self._classify_url,
                body=body,
                headers={"Content-Type": "application/json", "Accept": "application/json"},
                timeout=urllib3.Timeout(total=timeout),
                retries=False,
                redirect=False,
            )
        except (urllib3.exceptions.HTTPError, OSError) as error:
            outcome, predictions, retryable = _failure_outcome(error), None, True
        else:
            if response.status != 200:
                outcome, predictions = HTTP_ERROR, None
                retryable = response.status in _RETRYABLE_STATUS
            else:
                try:
                    payload = json.loads(response.data)
                    predictions = parse_predictions(payload, count, int(self.config["ranking_length"]))
                    outcome, retryable = OK, False
                except (ValueError, KeyError, TypeError):  # BadResponse and JSONDecodeError are ValueErrors
                    outcome, predictions, retryable = BAD_RESPONSE, None, False
        metrics.MODEL_SERVING_LATENCY.observe(time.perf_counter() - started)
        metrics.MODEL_SERVING_REQUESTS.labels(outcome).inc()
        return outcome, predictions, retryable

    def _degrade(self, messages: List[Message], reason: str) -> None:
        # The in-process classifier's intent and ranking are already on the message.
        for message in messages:
            message.set(INTENT_SOURCE, {"classifier": "fallback", "outcome": reason}, add_to_output=True)
        metrics.NLU_DEGRADED.labels(reason).inc(len(messages))

    def _on_transition(self, old: CircuitState, new: CircuitState) -> None:
        metrics.MODEL_SERVING_CIRCUIT_STATE.set(int(new))
        # Once per transition, not per message: while open, every message is degraded
        # and only the metrics count them.
        logger.warning(
            "model-serving circuit %s -> %s",
            old.name.lower(),
            new.name.lower(),
            extra={
                "circuit_from": old.name.lower(),
                "circuit_to": new.name.lower(),
                "last_failure": self._last_failure,
                "failure_threshold": self.circuit.failure_threshold,
                "reset_seconds": self.circuit.reset_seconds,
                "model_serving_url": self.url,
            },
        )
