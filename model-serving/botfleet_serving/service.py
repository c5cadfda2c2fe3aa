"""BentoML 1.4 service: NLU intent classification for one bot.

HTTP API (JSON):

- ``POST /classify`` ``{"texts": ["hi", ...]}`` -> one ranking per text, in order. Adaptive
  batching: concurrent requests are merged into one encoder batch.
- ``POST /classify_one`` ``{"text": "hi"}`` -> one ranking.
- ``GET /model/`` -> the model tag, intents, temperature, threshold, training data hash.
- ``GET /livez``, ``GET /readyz`` (BentoML; ready once the model is loaded), ``GET /metrics``.

A ranking is ``{"intent": {"name", "confidence"}, "intent_ranking": [top 10]}``, the shape
of the intent fields of Rasa's ``/model/parse``.

Settings (environment): ``BOTFLEET_NLU_MODEL_TAG`` (default ``botfleet-nlu:latest``),
``BOTFLEET_SERVING_WORKERS`` (default: one per CPU), ``BOTFLEET_ACCESS_LOG`` (0: no per-request access log), ``BOTFLEET_TORCH_THREADS`` (default: CPUs / workers),
``BOTFLEET_MAX_BATCH_SIZE`` (64), ``BOTFLEET_MAX_LATENCY_MS`` (1000), ``BOTFLEET_INFERENCE_DTYPE``
(``auto``: bfloat16 on CPUs with native bfloat16, else float32), ``BENTOML_HOME`` (the model store).
"""

from __future__ import annotations

import logging
import os
import time
from typing import Annotated, Any

import bentoml
from bentoml.validators import ContentType
from pydantic import Field
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from .classifier import IntentClassifier, Ranking, inference_dtype

logger = logging.getLogger("botfleet_serving")

MODEL_TAG = os.environ.get("BOTFLEET_NLU_MODEL_TAG", "botfleet-nlu:latest")


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


# One worker process per CPU, one torch thread each: a single process spends much of its
# time in Python (HTTP, validation, JSON) and leaves the second core idle.
WORKERS = int(os.environ.get("BOTFLEET_SERVING_WORKERS") or _cpu_count())
MAX_BATCH_SIZE = int(os.environ.get("BOTFLEET_MAX_BATCH_SIZE", "64"))
MAX_LATENCY_MS = int(os.environ.get("BOTFLEET_MAX_LATENCY_MS", "1000"))
MAX_TEXTS_PER_REQUEST = 256
MAX_TEXT_CHARS = 2000

ACCESS_LOG = os.environ.get("BOTFLEET_ACCESS_LOG", "0").lower() in {"1", "true", "yes"}

Text = Annotated[str, Field(min_length=1, max_length=MAX_TEXT_CHARS)]
Texts = Annotated[list[Text], Field(max_length=MAX_TEXTS_PER_REQUEST)]
# A fixed media type: without it BentoML derives it from the output's JSON schema on every
# response, which cost about a fifth of the event loop's time at a few hundred requests/s.
Rankings = Annotated[list[Ranking], ContentType("application/json")]
OneRanking = Annotated[Ranking, ContentType("application/json")]


class _Metrics:
    """The service's own Prometheus metrics.

    Created in the worker, after BentoML has set PROMETHEUS_MULTIPROC_DIR, so that the
    values land in the multiprocess files that ``/metrics`` reads.
    """

    def __init__(self) -> None:
        import prometheus_client as pc

        self.requests = pc.Counter(
            "botfleet_serving_requests_total", "HTTP requests to the NLU service.", ["endpoint", "code"]
        )
        self.texts = pc.Counter("botfleet_serving_texts_total", "Texts classified.", ["endpoint"])
        self.intents = pc.Counter(
            "botfleet_serving_predicted_intents_total", "Texts classified, by top intent.", ["intent"]
        )
        self.low_confidence = pc.Counter(
            "botfleet_serving_low_confidence_total",
            "Texts whose top confidence is below the model's threshold.",
        )
        self.inference = pc.Histogram(
            "botfleet_serving_inference_duration_seconds",
            "Time to classify one batch (encoder and head).",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
        )
        self.batch_size = pc.Histogram(
            "botfleet_serving_batch_size", "Texts per model call.", buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256)
        )
        self.confidence = pc.Histogram(
            "botfleet_serving_intent_confidence",
            "Top intent confidence.",
            buckets=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.65, 0.7, 0.8, 0.9, 0.95, 1.0),
        )
        self.model_loaded = pc.Gauge(
            "botfleet_serving_model_loaded", "1 when the model is loaded.", multiprocess_mode="livemax"
        )
        self.model_info = pc.Gauge(
            "botfleet_serving_model_info",
            "The loaded model (value 1).",
            ["model_tag", "training_data_hash"],
            multiprocess_mode="livemax",
        )
        self.model_load_failures = pc.Counter(
            "botfleet_serving_model_load_failures_total", "Failed attempts to load the model."
        )


_METRICS: _Metrics | None = None


def metrics() -> _Metrics:
    global _METRICS
    if _METRICS is None:
        _METRICS = _Metrics()
    return _METRICS


class RequestCounter:
    """ASGI middleware: counts HTTP requests by path and status code."""

    COUNTED = {"/classify", "/classify_one", "/model", "/model/"}

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope.get("type") != "http" or scope.get("path") not in self.COUNTED:
            await self.app(scope, receive, send)
            return
        status = {"code": 500}

        async def capture(message: Any) -> None:
            if message.get("type") == "http.response.start":
                status["code"] = int(message.get("status", 500))
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            metrics().requests.labels(scope["path"].rstrip("/"), str(status["code"])).inc()


async def _model_info(request: Request) -> JSONResponse:
    service = bentoml.get_current_service()
    return JSONResponse(service.model_info())


info_app = Starlette(routes=[Route("/", _model_info, methods=["GET"])])


@bentoml.asgi_app(info_app, path="/model")
@bentoml.service(
    name="botfleet-nlu",
    workers=WORKERS,
    resources={"cpu": str(_cpu_count())},
    traffic={"timeout": 30, "max_concurrency": 512},
    logging={"access": {"enabled": ACCESS_LOG, "skip_paths": ["/livez", "/readyz", "/metrics"]}},
    labels={"project": "botfleet", "component": "model-serving"},
)
class NLUService:
    nlu_model = bentoml.models.BentoModel(MODEL_TAG)

    def __init__(self) -> None:
        m = metrics()
        threads = int(os.environ.get("BOTFLEET_TORCH_THREADS") or max(1, _cpu_count() // max(1, WORKERS)))
        try:
            stored = self.nlu_model
            self.classifier: IntentClassifier = IntentClassifier.load(
                stored.path, threads=threads, dtype=inference_dtype()
            )
        except Exception:
            m.model_load_failures.inc()
            logger.exception("model-load-failed tag=%s", MODEL_TAG)
            raise
        self.tag = str(stored.tag)
        self.threshold = float(stored.info.metadata.get("threshold", 0.65))
        self.data_hash = str(stored.info.metadata.get("training_data_hash", ""))
        self.classifier.predict(["warm up the encoder"])  # first call allocates; keep it off the request path
        m.model_loaded.set(1)
        m.model_info.labels(self.tag, self.data_hash[:12]).set(1)
        logger.info(
            "model-loaded tag=%s intents=%d threads=%d dtype=%s",
            self.tag,
            len(self.classifier.intents),
            threads,
            self.classifier.dtype,
        )

    def __is_ready__(self) -> bool:
        return getattr(self, "classifier", None) is not None

    def model_info(self) -> dict[str, Any]:
        return {
            "tag": self.tag,
            "intents": self.classifier.intents,
            "temperature": self.classifier.temperature,
            "threshold": self.threshold,
            "training_data_hash": self.data_hash,
            "inference_dtype": self.classifier.dtype,
        }

    def _classify(self, texts: list[str], endpoint: str) -> list[Ranking]:
        m = metrics()
        started = time.perf_counter()
        rankings = self.classifier.predict(texts)
        m.inference.observe(time.perf_counter() - started)
        m.batch_size.observe(len(texts))
        m.texts.labels(endpoint).inc(len(texts))
        for r in rankings:
            conf = r["intent"]["confidence"]
            m.intents.labels(r["intent"]["name"]).inc()
            m.confidence.observe(conf)
            if conf < self.threshold:
                m.low_confidence.inc()
        return rankings

    @bentoml.api(batchable=True, max_batch_size=MAX_BATCH_SIZE, max_latency_ms=MAX_LATENCY_MS)
    def classify(self, texts: Texts) -> Rankings:
        """Intent rankings for a list of texts (batched across concurrent requests)."""
        return self._classify(texts, "classify")

    @bentoml.api
    def classify_one(self, text: Text) -> OneRanking:
        """The intent ranking of one text."""
        return self._classify([text], "classify_one")[0]


NLUService.add_asgi_middleware(RequestCounter)  # type: ignore[attr-defined]  # a bentoml Service at runtime
