"""The analysis against a real Prometheus (Debian's 2.42), scraping real exporters.

Three bots, each with a stable and a canary track, every track its own exporter (as every
Rasa pod is) with namespace, bot, component and track added as target labels at scrape,
as the ServiceMonitor does. Traffic runs at 10 messages a second on every track but one:

    stable (every bot)  10% fallbacks, no action errors, 5% handoffs, turns of 80 ms
    good canary         the same, turns of 90 ms
    bad canary          50% fallbacks, 50% action errors, 40% handoffs, turns of 2 s
    idle canary         no traffic at all

The built-in checks must pass on the good canary, fail on the bad one and be unknown on
the idle one; custom checks see their placeholders filled in; bad PromQL and a result of
several series are unknown; and once Prometheus is stopped, everything is unknown.
"""

import asyncio
import contextlib
import threading
import time

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_support import Target, exporter, prometheus_server

from botfleet_operator.rollout.analysis import run_analysis
from botfleet_operator.rollout.spec import BUILT_IN_METRICS, parse_canary

NAMESPACE = "bots"
TURN_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)  # Rasa's
TICK = 0.1  # one message in per tick: 10 a second
STABLE = {"fallback": 0.1, "error": 0.0, "handoff": 0.05, "latency": 0.08}
PROFILES = {
    ("good", "stable"): STABLE,
    ("good", "canary"): {**STABLE, "latency": 0.09},
    ("bad", "stable"): STABLE,
    ("bad", "canary"): {"fallback": 0.5, "error": 0.5, "handoff": 0.4, "latency": 2.0},
    ("idle", "stable"): STABLE,
    ("idle", "canary"): None,
}


class RasaMetrics:
    """The metrics a Rasa pod exposes, the labelled counters without series until first
    used (as prometheus_client does it in Rasa)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.messages = Counter("botfleet_messages_total", "m", ["channel", "direction"], registry=self.registry)
        self.fallbacks = Counter("botfleet_nlu_fallbacks_total", "f", ["reason"], registry=self.registry)
        self.calls = Counter("botfleet_action_server_calls_total", "c", ["action"], registry=self.registry)
        self.errors = Counter("botfleet_action_server_errors_total", "e", ["action"], registry=self.registry)
        self.handoffs = Counter("botfleet_handoffs_started_total", "h", registry=self.registry)
        self.turns = Histogram("botfleet_turn_duration_seconds", "t", buckets=TURN_BUCKETS, registry=self.registry)

    def turn(self, profile: dict) -> None:
        self.messages.labels("rest", "in").inc()
        self.messages.labels("rest", "out").inc()
        self.calls.labels("action_order").inc(0.5)
        for counter, share in ((self.fallbacks.labels("low_confidence"), profile["fallback"]), (self.errors.labels("action_order"), profile["error"] * 0.5)):
            if share:
                counter.inc(share)
        self.handoffs.inc(profile["handoff"])
        self.turns.observe(profile["latency"])


def traffic(tracks: dict, stop: threading.Event) -> None:
    while not stop.wait(TICK):
        for key, metrics in tracks.items():
            if PROFILES[key] is not None:
                metrics.turn(PROFILES[key])


CUSTOM = parse_canary({"analysis": {"interval": "5s", "metrics": [
    {"name": "p95_turn_latency", "thresholdRange": {"max": 0.5}},
    {"name": "messages_in", "thresholdRange": {"min": 5, "max": 15},
     "query": 'sum(rate(botfleet_messages_total{namespace="{{namespace}}", bot="{{bot}}", track="{{track}}", direction="in"}[{{interval}}]))'},
    {"name": "broken", "query": "sum(rate(botfleet_messages_total[{{interval}}]", "thresholdRange": {"max": 1}},
    {"name": "several", "query": 'botfleet_messages_total{namespace="{{namespace}}", bot="{{bot}}"}', "thresholdRange": {"max": 1e9}},
]}})
BUILT_IN = parse_canary({"analysis": {"interval": "5s"}})


def analyse(url, spec, bot):
    results = asyncio.run(run_analysis(url, spec, NAMESPACE, bot, time.time(), timeout=5))
    return {r.name: r for r in results}


def test_analysis_against_a_real_prometheus(tmp_path):
    started = time.monotonic()
    tracks = {key: RasaMetrics() for key in PROFILES}
    stop = threading.Event()
    with contextlib.ExitStack() as stack:
        ports = {key: stack.enter_context(exporter(metrics.registry)) for key, metrics in tracks.items()}
        targets = [Target(ports[key], {"namespace": NAMESPACE, "bot": key[0], "component": "rasa", "track": key[1]}) for key in PROFILES]
        worker = threading.Thread(target=traffic, args=(tracks, stop), daemon=True)
        worker.start()
        stack.callback(worker.join, 5)
        stack.callback(stop.set)
        server = stack.enter_context(prometheus_server(tmp_path, targets))
        # a full range (5 s, five scrapes) on the last track to start
        server.wait_for('min(count_over_time(botfleet_turn_duration_seconds_count{namespace="bots"}[5s])) >= 5', timeout=30)

        good = analyse(server.url, BUILT_IN, "good")
        assert {name: r.status for name, r in good.items()} == dict.fromkeys(BUILT_IN_METRICS, "pass"), good
        assert abs(good["fallback_rate"].value - 0.1) < 0.02 and abs(good["fallback_rate"].stable_value - 0.1) < 0.02
        assert good["action_error_rate"].value == 0 and good["action_error_rate"].stable_value == 0  # no error series at all
        assert abs(good["handoff_rate"].value - 0.05) < 0.01
        assert 0.05 < good["p95_turn_latency"].value <= 0.1

        bad = analyse(server.url, BUILT_IN, "bad")
        assert {name: r.status for name, r in bad.items()} == dict.fromkeys(BUILT_IN_METRICS, "fail"), bad
        assert abs(bad["fallback_rate"].value - 0.5) < 0.05
        assert abs(bad["action_error_rate"].value - 0.5) < 0.05
        assert abs(bad["handoff_rate"].value - 0.4) < 0.05
        assert 1.0 < bad["p95_turn_latency"].value <= 2.5
        assert bad["fallback_rate"].reason.startswith("fallback_rate 0.5") and "above max(stable 0.1" in bad["fallback_rate"].reason

        idle = analyse(server.url, BUILT_IN, "idle")
        assert {name: r.status for name, r in idle.items()} == dict.fromkeys(BUILT_IN_METRICS, "unknown"), idle
        assert "no data" in idle["fallback_rate"].reason
        assert "nan" in idle["p95_turn_latency"].reason  # histogram_quantile of no observations
        assert idle["fallback_rate"].stable_value is not None  # the stable track still answers

        custom = {bot: analyse(server.url, CUSTOM, bot) for bot in ("good", "bad", "idle")}
        assert custom["good"]["p95_turn_latency"].status == "pass" and custom["bad"]["p95_turn_latency"].status == "fail"
        assert custom["good"]["messages_in"].status == "pass" and 5 < custom["good"]["messages_in"].value < 15
        assert 5 < custom["good"]["messages_in"].stable_value < 15  # {{track}} in the query: the stable value is shown
        assert custom["idle"]["messages_in"].status == "unknown"
        for bot in ("good", "idle"):
            assert custom[bot]["broken"].status == "unknown" and "HTTP 400: bad_data" in custom[bot]["broken"].reason
            assert custom[bot]["several"].status == "unknown" and "series, one expected" in custom[bot]["several"].reason

        server.stop()
        gone = analyse(server.url, BUILT_IN, "good")
        assert {r.status for r in gone.values()} == {"unknown"}
        assert all("query failed" in r.reason for r in gone.values())
    assert time.monotonic() - started < 60
