"""The checks alone: their PromQL, the verdict on given values (absolute ranges, the
relative defaults, unknown values), the parsing of Prometheus's answers, and a query
that fails in every way a network can, without raising."""

import asyncio
import math

import pytest
from aiohttp import web
from prometheus_support import free_port

from botfleet_operator.rollout.analysis import (
    RELATIVE_DEFAULTS,
    CheckResult,
    QueryResult,
    Relative,
    built_in_query,
    compares_stable,
    evaluate,
    parse_response,
    queries_stable,
    query,
    render,
    run_analysis,
    selector,
)
from botfleet_operator.rollout.spec import BUILT_IN_METRICS, CanarySpec, MetricCheck

SPEC = CanarySpec(interval_seconds=120)


# PromQL


def test_selector_quotes_values():
    assert selector("bots", "hello", "canary") == 'namespace="bots", bot="hello", track="canary"'
    assert selector('a"b', "c\\d", "stable") == 'namespace="a\\"b", bot="c\\\\d", track="stable"'


def test_every_built_in_has_a_query_and_a_relative_default():
    sel = selector("bots", "hello", "canary")
    for name in BUILT_IN_METRICS:
        text = built_in_query(name, sel, "1m")
        assert sel in text and "[1m]" in text
        assert name in RELATIVE_DEFAULTS
    with pytest.raises(KeyError):
        built_in_query("orders", sel, "1m")


def test_fallback_rate_query():
    text = render(MetricCheck("fallback_rate"), SPEC, "bots", "hello", "canary")
    sel = 'namespace="bots", bot="hello", track="canary"'
    assert text == (
        f"(sum(rate(botfleet_nlu_fallbacks_total{{{sel}}}[2m])) / (sum(rate(botfleet_messages_total{{{sel}, direction=\"in\"}}[2m])) > 0))"
        f" or ((sum(rate(botfleet_messages_total{{{sel}, direction=\"in\"}}[2m]))) > 0) * 0"
    )


def test_other_built_in_queries():
    sel = 'namespace="bots", bot="hello", track="stable"'
    errors = render(MetricCheck("action_error_rate"), SPEC, "bots", "hello", "stable")
    assert f"sum(rate(botfleet_action_server_errors_total{{{sel}}}[2m])) / (sum(rate(botfleet_action_server_calls_total{{{sel}}}[2m])) > 0)" in errors
    latency = render(MetricCheck("p95_turn_latency"), SPEC, "bots", "hello", "stable")
    assert latency == f"histogram_quantile(0.95, sum by (le) (rate(botfleet_turn_duration_seconds_bucket{{{sel}}}[2m])))"
    handoffs = render(MetricCheck("handoff_rate"), SPEC, "bots", "hello", "stable")
    assert handoffs.startswith(f"(sum(rate(botfleet_handoffs_started_total{{{sel}}}[2m])) / (sum(rate(botfleet_messages_total{{{sel}, direction=\"in\"}}[2m])) > 0))")


def test_the_check_interval_is_the_query_range():
    assert "[5m]" in render(MetricCheck("fallback_rate", interval_seconds=300), SPEC, "n", "b", "canary")
    assert "[90s]" in render(MetricCheck("fallback_rate"), CanarySpec(interval_seconds=90), "n", "b", "canary")


def test_custom_query_placeholders():
    check = MetricCheck("orders", query='sum(rate(orders_total{namespace="{{namespace}}", bot="{{bot}}", track="{{track}}"}[{{interval}}])) + {{other}}', min=1)
    assert render(check, SPEC, "bots", "hello", "canary") == 'sum(rate(orders_total{namespace="bots", bot="hello", track="canary"}[2m])) + {{other}}'


def test_which_checks_need_the_stable_track():
    assert compares_stable(MetricCheck("fallback_rate")) and queries_stable(MetricCheck("fallback_rate"))
    assert not compares_stable(MetricCheck("fallback_rate", max=0.2)) and queries_stable(MetricCheck("fallback_rate", max=0.2))
    assert not compares_stable(MetricCheck("c", query='x{track="{{track}}"}', max=1)) and queries_stable(MetricCheck("c", query='x{track="{{track}}"}', max=1))
    assert not queries_stable(MetricCheck("c", query="up", max=1))


# Verdicts


def test_relative_limit():
    assert Relative(1.5, 0.05).limit(0.0) == 0.05
    assert Relative(1.5, 0.05).limit(0.2) == pytest.approx(0.3)  # 1.5x beats +0.05
    assert Relative(1.5, 0.05).limit(0.04) == pytest.approx(0.09)  # +0.05 beats 1.5x


@pytest.mark.parametrize(
    "canary, stable, status",
    [
        (0.10, 0.10, "pass"),
        (0.149, 0.10, "pass"),  # the limit is max(0.15, 0.15)
        (0.16, 0.10, "fail"),
        (0.05, 0.0, "pass"),  # a stable at 0 still allows the margin
        (0.06, 0.0, "fail"),
        (0.0, 0.3, "pass"),  # better than stable
        (0.44, 0.3, "pass"),  # the limit is max(0.45, 0.35)
        (0.46, 0.3, "fail"),
    ],
)
def test_fallback_rate_relative_default(canary, stable, status):
    result = evaluate(MetricCheck("fallback_rate"), canary, stable)
    assert result.status == status
    assert (result.value, result.stable_value) == (canary, stable)


def test_relative_failure_reason_names_value_and_bound():
    result = evaluate(MetricCheck("p95_turn_latency"), 2.4, 0.1)
    assert result == CheckResult("p95_turn_latency", "fail", 2.4, 0.1, "p95_turn_latency 2.4 above max(stable 0.1 x 1.5, stable + 0.25) = 0.35")


def test_each_built_in_default():
    assert evaluate(MetricCheck("action_error_rate"), 0.02, 0.0).status == "pass"
    assert evaluate(MetricCheck("action_error_rate"), 0.03, 0.0).status == "fail"
    assert evaluate(MetricCheck("p95_turn_latency"), 0.6, 0.4).status == "pass"  # max(0.6, 0.65)
    assert evaluate(MetricCheck("p95_turn_latency"), 0.7, 0.4).status == "fail"
    assert evaluate(MetricCheck("handoff_rate"), 0.1, 0.05).status == "pass"
    assert evaluate(MetricCheck("handoff_rate"), 0.11, 0.05).status == "fail"


@pytest.mark.parametrize(
    "low, high, value, status",
    [
        (None, 0.2, 0.2, "pass"),
        (None, 0.2, 0.21, "fail"),
        (0.5, None, 0.5, "pass"),
        (0.5, None, 0.4, "fail"),
        (1, 2, 1.5, "pass"),
        (1, 2, 2.5, "fail"),
        (1, 2, 0.5, "fail"),
    ],
)
def test_absolute_range_on_the_canary(low, high, value, status):
    result = evaluate(MetricCheck("fallback_rate", min=low, max=high), value, 0.0)
    assert result.status == status


def test_absolute_range_ignores_the_stable_value():
    # far worse than stable, yet within the absolute range: a pass
    assert evaluate(MetricCheck("fallback_rate", max=0.5), 0.4, 0.01).status == "pass"
    # a missing stable value does not matter either
    assert evaluate(MetricCheck("fallback_rate", max=0.5), 0.4, None).status == "pass"


def test_absolute_failure_reason():
    result = evaluate(MetricCheck("orders", query="q", min=1.0), 0.25, None)
    assert result.reason == "orders 0.25 outside [1, +inf]"
    assert evaluate(MetricCheck("x", query="q", max=3.0), 4.0, None).reason == "x 4 outside [-inf, 3]"


@pytest.mark.parametrize("value", [None, math.nan, math.inf, -math.inf])
def test_missing_or_non_finite_values_are_unknown(value):
    for check in (MetricCheck("fallback_rate"), MetricCheck("fallback_rate", max=0.2), MetricCheck("c", query="q", min=0)):
        result = evaluate(check, value, 0.1)
        assert result.status == "unknown"
        assert result.value is None  # never a NaN in the status


def test_query_error_is_unknown():
    result = evaluate(MetricCheck("fallback_rate"), None, None, error="HTTP 400: bad_data: parse error")
    assert result.status == "unknown" and "query failed: HTTP 400: bad_data: parse error" in result.reason


@pytest.mark.parametrize("stable", [None, math.nan])
def test_relative_check_without_a_stable_value_is_unknown(stable):
    result = evaluate(MetricCheck("fallback_rate"), 0.1, stable)
    assert result.status == "unknown" and "no stable value" in result.reason
    assert result.value == 0.1 and result.stable_value is None


def test_custom_check_without_a_range_is_unknown():
    assert evaluate(MetricCheck("c", query="q"), 1.0, None).status == "unknown"


# Prometheus's answers


def vector(*values):
    return {"status": "success", "data": {"resultType": "vector", "result": [{"metric": {"i": str(i)}, "value": [1.0, v]} for i, v in enumerate(values)]}}


def test_parse_response():
    assert parse_response(vector("0.25")) == QueryResult(0.25)
    assert parse_response(vector()) == QueryResult(None)
    assert parse_response({"status": "success", "data": {"resultType": "scalar", "result": [1.0, "3"]}}) == QueryResult(3.0)
    assert math.isnan(parse_response(vector("NaN")).value)
    assert parse_response(vector("+Inf")).value == math.inf


def test_parse_response_errors():
    several = parse_response(vector("1", "2"))
    assert several.value is None and several.error.startswith("2 series, one expected")
    assert parse_response({"status": "error", "errorType": "bad_data", "error": "parse error"}) == QueryResult(None, "bad_data: parse error")
    assert parse_response({"status": "success", "data": {"resultType": "matrix", "result": []}}).error == "a matrix result, one sample or a scalar expected"
    assert parse_response({"status": "success", "data": {"resultType": "vector", "result": [{"value": [1]}]}}).error.startswith("malformed vector")
    assert parse_response(["not", "a", "dict"]).error == "not a Prometheus API answer"


# The client, against servers that misbehave


async def serve(handler):
    app = web.Application()
    app.router.add_get("/api/v1/query", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}"


def test_query_never_raises():
    seen = []

    async def good(request):
        seen.append(dict(request.query))
        return web.json_response(vector("0.5"))

    async def broken(request):
        return web.Response(status=503, text="upstream connect error")

    async def bad_promql(request):
        return web.json_response({"status": "error", "errorType": "bad_data", "error": "1:5: parse error"}, status=400)

    async def slow(request):
        await asyncio.sleep(0.8)
        return web.json_response(vector("1"))

    async def main():
        results = {}
        for name, handler in (("good", good), ("broken", broken), ("bad_promql", bad_promql), ("slow", slow)):
            runner, url = await serve(handler)
            try:
                results[name] = await query(url + "/", "up", timeout=0.3, time=1700000000.5)
            finally:
                await runner.cleanup()
        results["refused"] = await query(f"http://127.0.0.1:{free_port()}", "up", timeout=1)
        results["no url"] = await query("", "up", timeout=1)
        results["bad url"] = await query("not a url", "up", timeout=1)
        return results

    results = asyncio.run(main())
    assert results["good"] == QueryResult(0.5)
    assert seen == [{"query": "up", "time": "1700000000.500"}]
    assert results["broken"] == QueryResult(None, "HTTP 503: upstream connect error")
    assert results["bad_promql"] == QueryResult(None, "HTTP 400: bad_data: 1:5: parse error")
    assert results["slow"].value is None and "within 0.3s" in results["slow"].error
    assert results["refused"].value is None and results["refused"].error
    assert results["no url"] == QueryResult(None, "no Prometheus URL configured")
    assert results["bad url"].value is None and results["bad url"].error


def test_run_analysis_against_an_unreachable_prometheus_is_all_unknown():
    results = asyncio.run(run_analysis(f"http://127.0.0.1:{free_port()}", CanarySpec(), "bots", "hello", None, timeout=1))
    assert [r.name for r in results] == list(BUILT_IN_METRICS)
    assert {r.status for r in results} == {"unknown"}
    assert all("query failed" in r.reason for r in results)
