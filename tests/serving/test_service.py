"""The real service: `bentoml serve` in a subprocess, driven over HTTP."""

from __future__ import annotations

import concurrent.futures

import httpx
import pytest
from botfleet_serving.bench import bench
from serving_support import MODEL_TAG


def _metric(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    total = 0.0
    found = False
    for line in text.splitlines():
        if not line.startswith(name) or line.startswith("#"):
            continue
        head, _, value = line.rpartition(" ")
        metric, _, label_text = head.partition("{")
        if metric != name:
            continue
        if all(f'{k}="{v}"' in label_text for k, v in labels.items()):
            total += float(value)
            found = True
    if not found:
        raise AssertionError(f"{name} {labels} not in /metrics")
    return total


def test_ready_and_live(service_url: str) -> None:
    assert httpx.get(f"{service_url}/readyz").status_code == 200
    assert httpx.get(f"{service_url}/livez").status_code == 200


def test_classify_one_text(service_url: str) -> None:
    r = httpx.post(f"{service_url}/classify", json={"texts": ["hello there, good morning"]})
    assert r.status_code == 200
    body = r.json()
    assert len(body) == 1
    assert body[0]["intent"]["name"] == "greet"
    assert body[0]["intent"] == body[0]["intent_ranking"][0]
    assert 0.0 < body[0]["intent"]["confidence"] <= 1.0
    assert {s["name"] for s in body[0]["intent_ranking"]} == {
        "greet",
        "goodbye",
        "order_status",
        "book_flight",
        "ask_price",
    }


def test_classify_many_texts_keeps_order(service_url: str) -> None:
    texts = ["bye, see you tomorrow", "how much is the tablet", "hi!", "track my order please"]
    r = httpx.post(f"{service_url}/classify", json={"texts": texts})
    assert r.status_code == 200
    assert [x["intent"]["name"] for x in r.json()] == ["goodbye", "ask_price", "greet", "order_status"]
    # The largest request accepted: more texts than one model batch.
    r = httpx.post(f"{service_url}/classify", json={"texts": texts * 64}, timeout=60)
    assert r.status_code == 200 and len(r.json()) == 256
    assert [x["intent"]["name"] for x in r.json()[-4:]] == ["goodbye", "ask_price", "greet", "order_status"]


def test_concurrent_requests_are_batched_and_each_gets_its_answer(service_url: str) -> None:
    texts = ["hello", "goodbye for now", "book a flight to Oslo", "what does the phone cost"] * 8
    expected = ["greet", "goodbye", "book_flight", "ask_price"] * 8

    def one(t: str) -> str:
        r = httpx.post(f"{service_url}/classify", json={"texts": [t]}, timeout=30)
        r.raise_for_status()
        return str(r.json()[0]["intent"]["name"])

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        assert list(pool.map(one, texts)) == expected
    metrics = httpx.get(f"{service_url}/metrics").text
    # Some model call handled more than one text: the adaptive batcher merged requests.
    assert _metric(metrics, "botfleet_serving_batch_size_count") < _metric(
        metrics, "botfleet_serving_batch_size_sum"
    )


def test_classify_one_endpoint(service_url: str) -> None:
    r = httpx.post(f"{service_url}/classify_one", json={"text": "I want to fly to Berlin"})
    assert r.status_code == 200
    assert r.json()["intent"]["name"] == "book_flight"


def test_model_info(service_url: str) -> None:
    r = httpx.get(f"{service_url}/model/", follow_redirects=True)
    assert r.status_code == 200
    info = r.json()
    assert info["tag"] == MODEL_TAG
    assert info["intents"] == ["ask_price", "book_flight", "goodbye", "greet", "order_status"]
    assert info["threshold"] == 0.65 and info["temperature"] > 0
    assert len(info["training_data_hash"]) == 64


def test_metrics(service_url: str) -> None:
    httpx.post(f"{service_url}/classify", json={"texts": ["hi", "bye"]}).raise_for_status()
    text = httpx.get(f"{service_url}/metrics").text
    assert _metric(text, "botfleet_serving_texts_total", endpoint="classify") >= 2
    assert _metric(text, "botfleet_serving_requests_total", endpoint="/classify", code="200") >= 1
    assert _metric(text, "botfleet_serving_model_info", model_tag=MODEL_TAG) == 1
    assert _metric(text, "botfleet_serving_model_loaded") == 1
    assert _metric(text, "botfleet_serving_inference_duration_seconds_count") >= 1
    assert _metric(text, "botfleet_serving_predicted_intents_total", intent="greet") >= 1
    assert "bentoml_service_request_total" in text  # BentoML's own metrics are there too


@pytest.mark.parametrize(
    ("path", "kwargs"),
    [
        ("/classify", {"content": b"{not json", "headers": {"content-type": "application/json"}}),
        ("/classify", {"json": {"texts": "not a list"}}),
        ("/classify", {"json": {"text": ["wrong field"]}}),
        ("/classify", {"json": {"texts": [1, 2]}}),
        ("/classify", {"json": {"texts": [""]}}),
        ("/classify", {"json": {"texts": ["x" * 5000]}}),
        ("/classify", {"json": {"texts": ["hi"] * 257}}),
        ("/classify_one", {"json": {}}),
        ("/classify_one", {"json": {"text": None}}),
    ],
)
def test_malformed_requests_get_4xx(service_url: str, path: str, kwargs: dict[str, object]) -> None:
    r = httpx.post(f"{service_url}{path}", **kwargs)  # type: ignore[arg-type]
    assert 400 <= r.status_code < 500, (r.status_code, r.text[:300])
    # and the service still answers afterwards
    assert httpx.post(f"{service_url}/classify", json={"texts": ["hi"]}).status_code == 200


def test_malformed_requests_are_counted(service_url: str) -> None:
    httpx.post(f"{service_url}/classify", json={"texts": "nope"})
    text = httpx.get(f"{service_url}/metrics").text
    codes = [line for line in text.splitlines() if line.startswith("botfleet_serving_requests_total{")]
    assert any('endpoint="/classify"' in c and 'code="4' in c for c in codes), codes


def test_bench_reports_throughput(service_url: str) -> None:
    report = bench(service_url, ["hi", "where is my order", "book a flight"], concurrency=4, requests=40)
    assert report["errors"] == 0 and report["requests"] == 40
    assert report["parses_per_second"] > 0
    assert 0 < report["latency_ms"]["p50"] <= report["latency_ms"]["p99"]
