"""RemoteIntentClassifier against a real local HTTP server: overwrites the in-process
prediction when the service answers, keeps it on every kind of failure, and stops
calling a failing service until the circuit's reset time has passed."""

import copy
import logging
import time

import pytest
from fake_model_server import FakeModelServer, closed_port_url, rank
from prometheus_client import REGISTRY
from rasa.shared.nlu.constants import INTENT, INTENT_RANKING_KEY, TEXT
from rasa.shared.nlu.training_data.message import Message

from botfleet_rasa.components.remote_intent import (
    INTENT_SOURCE,
    URL_ENV,
    BadResponse,
    RemoteIntentClassifier,
    parse_predictions,
)

LOCAL = {"name": "local_guess", "confidence": 0.42}
LOCAL_RANKING = [LOCAL, {"name": "greet", "confidence": 0.31}]
OUTCOMES = ["ok", "timeout", "connection_error", "http_error", "bad_response", "circuit_open"]


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def message(text="hello there"):
    """A message as the in-process fallback classifier left it."""
    m = Message(data={TEXT: text})
    m.set(INTENT, dict(LOCAL), add_to_output=True)
    m.set(INTENT_RANKING_KEY, copy.deepcopy(LOCAL_RANKING), add_to_output=True)
    return m


def counts():
    requests = {o: REGISTRY.get_sample_value("botfleet_model_serving_requests_total", {"outcome": o}) or 0 for o in OUTCOMES}
    degraded = {
        o: REGISTRY.get_sample_value("botfleet_nlu_degraded_total", {"reason": o}) or 0
        for o in [*OUTCOMES, "not_configured"]
    }
    latency = REGISTRY.get_sample_value("botfleet_model_serving_latency_seconds_count") or 0
    return requests, degraded, latency


def circuit_gauge():
    return REGISTRY.get_sample_value("botfleet_model_serving_circuit_state")


def classifier(url, clock=time.monotonic, **config):
    return RemoteIntentClassifier({"url": url, **config}, clock=clock)


def assert_kept_fallback(m, reason):
    assert m.get(INTENT) == LOCAL
    assert m.get(INTENT_RANKING_KEY) == LOCAL_RANKING
    assert m.get(INTENT_SOURCE) == {"classifier": "fallback", "outcome": reason}


@pytest.fixture
def server():
    with FakeModelServer() as s:
        yield s


def test_a_served_ranking_replaces_the_in_process_one(server):
    before, degraded_before, latency_before = counts()
    m = classifier(server.url).process([message("hello, I want to book a flight")])[0]
    expected = rank("hello, I want to book a flight")
    assert m.get(INTENT) == {"name": "book_flight", "confidence": pytest.approx(expected["intent"]["confidence"])}
    ranking = m.get(INTENT_RANKING_KEY)
    assert [r["name"] for r in ranking] == ["book_flight", "greet", "goodbye", "order_status"]
    assert all(set(r) == {"name", "confidence"} for r in ranking)
    assert ranking == sorted(ranking, key=lambda r: -r["confidence"])
    assert m.get(INTENT_SOURCE) == {"classifier": "remote", "outcome": "ok"}
    assert set(m.as_dict(only_output_properties=True)) >= {INTENT, INTENT_RANKING_KEY, INTENT_SOURCE}
    assert server.bodies == [{"texts": ["hello, I want to book a flight"]}]
    after, degraded_after, latency_after = counts()
    assert after["ok"] == before["ok"] + 1
    assert degraded_after == degraded_before
    assert latency_after == latency_before + 1


def test_a_batch_is_one_request_and_each_message_gets_its_own_ranking(server):
    messages = [message("hi"), message(""), message("track my order")]
    classifier(server.url).process(messages)
    assert server.requests == 1 and server.bodies == [{"texts": ["hi", "track my order"]}]
    assert messages[0].get(INTENT)["name"] == "greet"
    assert messages[2].get(INTENT)["name"] == "order_status"
    assert messages[1].get(INTENT) == LOCAL  # nothing to classify


def test_long_texts_are_cut_to_what_the_service_accepts(server):
    m = classifier(server.url, max_text_chars=50).process([message("hello " * 100)])[0]
    assert m.get(INTENT_SOURCE)["classifier"] == "remote"
    assert server.bodies[0]["texts"][0] == ("hello " * 100)[:50]


def test_ranking_length_cuts_the_ranking(server):
    m = classifier(server.url, ranking_length=2).process([message("hello")])[0]
    assert [r["name"] for r in m.get(INTENT_RANKING_KEY)] == ["greet", "book_flight"]


def test_connections_are_kept_alive(server):
    c = classifier(server.url)
    for _ in range(3):
        c.process([message("hello")])
    assert server.requests == 3
    assert len(set(server.client_ports)) == 1


@pytest.mark.parametrize(
    ("mode", "status", "outcome"),
    [
        ("hang", None, "timeout"),
        ("status", 500, "http_error"),
        ("status", 404, "http_error"),
        ("malformed", None, "bad_response"),
        ("wrong_shape", None, "bad_response"),
        ("close", None, "connection_error"),
    ],
)
def test_each_failure_keeps_the_fallback_prediction(server, mode, status, outcome):
    server.mode, server.status = mode, status
    before, degraded_before, _ = counts()
    started = time.monotonic()
    m = classifier(server.url, timeout_ms=150, retries=0, retry_budget_ms=150).process([message()])[0]
    assert time.monotonic() - started < 1.0
    assert_kept_fallback(m, outcome)
    after, degraded_after, _ = counts()
    assert after[outcome] == before[outcome] + 1
    assert after["ok"] == before["ok"]
    assert degraded_after[outcome] == degraded_before[outcome] + 1


def test_connection_refused_keeps_the_fallback_prediction():
    before, _, _ = counts()
    m = classifier(closed_port_url(), retries=0).process([message()])[0]
    assert_kept_fallback(m, "connection_error")
    assert counts()[0]["connection_error"] == before["connection_error"] + 1


def test_a_5xx_is_retried_within_the_budget(server):
    server.fail_first = 1
    before, _, _ = counts()
    m = classifier(server.url, retries=1).process([message("hello")])[0]
    assert m.get(INTENT)["name"] == "greet"
    assert server.requests == 2
    after, _, _ = counts()
    assert (after["http_error"], after["ok"]) == (before["http_error"] + 1, before["ok"] + 1)


def test_a_4xx_and_a_bad_response_are_not_retried(server):
    server.mode, server.status = "status", 400
    classifier(server.url, retries=3).process([message()])
    server.mode = "malformed"
    classifier(server.url, retries=3).process([message()])
    assert server.requests == 2


def test_timeouts_are_retried_only_within_the_budget(server):
    server.mode = "hang"
    started = time.monotonic()
    m = classifier(server.url, timeout_ms=100, retries=5, retry_budget_ms=250).process([message()])[0]
    elapsed = time.monotonic() - started
    assert_kept_fallback(m, "timeout")
    # 100 + 100 + 50 ms: three attempts, not six, and the turn waited about the budget.
    assert 0.24 <= elapsed < 0.6
    deadline = time.monotonic() + 1
    while server.requests < 3 and time.monotonic() < deadline:  # the server may lag the client
        time.sleep(0.01)
    time.sleep(0.1)
    assert server.requests == 3


def test_the_circuit_opens_stops_calling_then_half_opens_and_recovers(server, caplog):
    clock = FakeClock()
    c = classifier(server.url, clock=clock, retries=0, circuit_failure_threshold=3, circuit_reset_seconds=30)
    assert circuit_gauge() == 0
    server.mode, server.status = "status", 503
    before, degraded_before, _ = counts()
    with caplog.at_level(logging.WARNING, logger="botfleet_rasa.components.remote_intent"):
        for _ in range(3):
            c.process([message()])
        assert server.requests == 3
        assert circuit_gauge() == 2
        # Open: no HTTP call at all, the fallback answers.
        for _ in range(4):
            assert_kept_fallback(c.process([message()])[0], "circuit_open")
        assert server.requests == 3
        after, degraded_after, _ = counts()
        assert after["circuit_open"] == before["circuit_open"] + 4
        assert after["http_error"] == before["http_error"] + 3
        assert degraded_after["circuit_open"] == degraded_before["circuit_open"] + 4
        # One warning for the transition, none for the messages while open.
        opened = [r for r in caplog.records if "closed -> open" in r.getMessage()]
        assert len(opened) == 1 and opened[0].last_failure == "http_error"
        assert len(caplog.records) == 1

        # Half-open: one probe; it fails, so the circuit opens again for 30 s.
        clock.now += 30
        c.process([message()])
        assert server.requests == 4 and circuit_gauge() == 2
        clock.now += 29
        c.process([message()])
        assert server.requests == 4

        # The service is back: the next probe succeeds and closes the circuit.
        server.mode = "ok"
        clock.now += 1
        m = c.process([message("hello")])[0]
        assert m.get(INTENT)["name"] == "greet"
        assert server.requests == 5 and circuit_gauge() == 0
        c.process([message("bye")])
        assert server.requests == 6
    transitions = [r.getMessage() for r in caplog.records]
    assert transitions == [
        "model-serving circuit closed -> open",
        "model-serving circuit open -> half_open",
        "model-serving circuit half_open -> open",
        "model-serving circuit open -> half_open",
        "model-serving circuit half_open -> closed",
    ]


def test_a_failure_is_one_per_classification_not_per_attempt(server):
    server.mode, server.status = "status", 503
    c = classifier(server.url, clock=FakeClock(), retries=2, circuit_failure_threshold=2)
    c.process([message()])
    assert server.requests == 3  # three attempts ...
    assert c.circuit.consecutive_failures == 1  # ... one failed classification


def test_without_a_url_every_message_uses_the_fallback(monkeypatch, caplog):
    monkeypatch.delenv(URL_ENV, raising=False)
    with caplog.at_level(logging.WARNING):
        c = RemoteIntentClassifier(RemoteIntentClassifier.get_default_config())
    assert c.url is None and "has no url" in caplog.text
    _, degraded_before, _ = counts()
    assert_kept_fallback(c.process([message()])[0], "not_configured")
    assert counts()[1]["not_configured"] == degraded_before["not_configured"] + 1


def test_the_url_comes_from_the_environment_when_not_configured(server, monkeypatch):
    monkeypatch.setenv(URL_ENV, server.url + "/")
    c = RemoteIntentClassifier(RemoteIntentClassifier.get_default_config())
    assert c.process([message("hello")])[0].get(INTENT)["name"] == "greet"
    assert server.requests == 1


def test_loading_does_not_touch_the_service():
    # Readiness must not depend on the service: creating the component is instant and
    # succeeds even when nothing listens.
    started = time.monotonic()
    RemoteIntentClassifier({"url": closed_port_url()})
    assert time.monotonic() - started < 0.1


def test_parse_predictions_validates_the_answer():
    ok = {"intent": {"name": "greet", "confidence": 0.9}, "intent_ranking": [{"name": "bye", "confidence": 0.1}, {"name": "greet", "confidence": 0.9}]}
    assert parse_predictions([ok], 1, 10) == [({"name": "greet", "confidence": 0.9}, [{"name": "greet", "confidence": 0.9}, {"name": "bye", "confidence": 0.1}])]
    # No ranking: the intent alone; float32 rounding above 1 is clamped.
    assert parse_predictions([{"intent": {"name": "greet", "confidence": 1.00001}}], 1, 10) == [
        ({"name": "greet", "confidence": 1.0}, [{"name": "greet", "confidence": 1.0}])
    ]
    bad = [
        {"intent": {"name": "greet", "confidence": 0.9}},  # not a list
        [ok, ok],  # two predictions for one text
        [{"intent": {"name": "", "confidence": 0.9}}],
        [{"intent": {"name": "greet", "confidence": True}}],
        [{"intent": {"name": "greet", "confidence": float("nan")}}],
        [{"intent": {"name": "greet", "confidence": 1.5}}],
        [{"intent": {"name": "greet", "confidence": 0.9}, "intent_ranking": {"greet": 0.9}}],
        [{"intent": {"name": "greet", "confidence": 0.9}, "intent_ranking": [{"name": "x"}]}],
        ["greet"],
    ]
    for payload in bad:
        with pytest.raises(BadResponse):
            parse_predictions(payload, 1, 10)


def test_an_unexpected_error_keeps_the_fallback_and_counts_as_a_failure(server, monkeypatch, caplog):
    c = classifier(server.url, clock=FakeClock(), circuit_failure_threshold=1)

    def broken(*args, **kwargs):
        raise RuntimeError("a bug in the client")

    monkeypatch.setattr(c, "_attempt", broken)
    with caplog.at_level(logging.ERROR, logger="botfleet_rasa.components.remote_intent"):
        assert_kept_fallback(c.process([message()])[0], "error")
    assert "failed unexpectedly" in caplog.text
    assert c.circuit.consecutive_failures == 1 and circuit_gauge() == 2
