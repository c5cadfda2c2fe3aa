"""spec.rollout parsed into frozen dataclasses: defaults, durations, steps, metrics, and
the errors for what cannot be interpreted."""

import dataclasses

import pytest

from botfleet_operator.rollout.spec import (
    BUILT_IN_CHECKS,
    BUILT_IN_METRICS,
    CanarySpec,
    MetricCheck,
    Pause,
    SetWeight,
    SpecError,
    format_duration,
    from_bot,
    parse_canary,
    parse_duration,
    parse_rollout,
)


def test_rolling_update_has_no_canary():
    assert parse_rollout(None) is None
    assert parse_rollout({}) is None
    assert parse_rollout({"strategy": "RollingUpdate", "canary": {"stepWeight": 5}}) is None
    assert from_bot({"spec": {"model": {"version": "1"}}}) is None


def test_canary_defaults():
    spec = parse_rollout({"strategy": "Canary", "canary": {}})
    assert spec == CanarySpec(
        step_weight=10, max_weight=50, steps=(), interval_seconds=60, threshold=5, metrics=BUILT_IN_CHECKS,
        replicas=1, drain_seconds=90, prometheus_address=None,
    )
    assert parse_canary(None) == spec
    assert from_bot({"spec": {"rollout": {"strategy": "Canary"}}}) == spec


def test_empty_metrics_mean_the_built_in_checks_judged_relative_to_stable():
    spec = parse_canary({"analysis": {"metrics": []}})
    assert [m.name for m in spec.metrics] == list(BUILT_IN_METRICS)
    assert all(m.query is None and m.min is None and m.max is None and m.interval_seconds is None for m in spec.metrics)
    assert all(m.built_in and not m.absolute for m in spec.metrics)


def test_full_spec():
    spec = parse_canary({
        "stepWeight": 5,
        "maxWeight": 30,
        "replicas": 2,
        "drainSeconds": 0,
        "steps": [{"setWeight": 5}, {"pause": {"duration": "30s"}}, {"setWeight": 20}, {"pause": {}}, {"setWeight": 30}],
        "analysis": {
            "interval": "2m",
            "threshold": 3,
            "prometheus": {"address": "http://prometheus.monitoring:9090"},
            "metrics": [
                {"name": "fallback_rate", "thresholdRange": {"max": 0.2}},
                {"name": "p95_turn_latency"},
                {"name": "orders", "query": "sum(rate(orders_total[{{interval}}]))", "interval": "5m", "thresholdRange": {"min": 0.1, "max": 9}},
            ],
        },
    })
    assert spec.step_weight == 5 and spec.max_weight == 30
    assert spec.steps == (SetWeight(5), Pause(30), SetWeight(20), Pause(None), SetWeight(30))
    assert spec.interval_seconds == 120 and spec.threshold == 3
    assert (spec.replicas, spec.drain_seconds, spec.prometheus_address) == (2, 0, "http://prometheus.monitoring:9090")
    assert spec.metrics == (
        MetricCheck("fallback_rate", max=0.2),
        MetricCheck("p95_turn_latency"),
        MetricCheck("orders", query="sum(rate(orders_total[{{interval}}]))", min=0.1, max=9.0, interval_seconds=300),
    )
    assert spec.metrics[0].absolute and spec.metrics[0].built_in
    assert not spec.metrics[2].built_in


def test_dataclasses_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        CanarySpec().threshold = 1  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        Pause(3).seconds = 4  # type: ignore[misc]


@pytest.mark.parametrize("text, seconds", [("0s", 0), ("30s", 30), ("5m", 300), ("1h", 3600), ("90m", 5400)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "5", "1d", "1.5m", "-1s", " 5m", "5 m", 5, None])
def test_bad_durations(text):
    with pytest.raises(SpecError, match="a duration is"):
        parse_duration(text)


@pytest.mark.parametrize("seconds, text", [(60, "1m"), (3600, "1h"), (90, "90s"), (300, "5m"), (0, "0s"), (7200, "2h")])
def test_format_duration(seconds, text):
    assert format_duration(seconds) == text


@pytest.mark.parametrize(
    "canary, field",
    [
        ({"analysis": {"interval": "1 minute"}}, "spec.rollout.canary.analysis.interval"),
        ({"steps": [{"pause": {"duration": "soon"}}]}, "spec.rollout.canary.steps[0].pause.duration"),
        ({"steps": [{}]}, "spec.rollout.canary.steps[0]"),
        ({"steps": [{"setWeight": 10, "pause": {}}]}, "spec.rollout.canary.steps[0]"),
        ({"steps": [{"setWeight": 60}]}, "spec.rollout.canary.steps[0].setWeight"),
        ({"stepWeight": 60}, "spec.rollout.canary.stepWeight"),
        ({"stepWeight": 0}, "spec.rollout.canary.stepWeight"),
        ({"maxWeight": 101}, "spec.rollout.canary.maxWeight"),
        ({"analysis": {"threshold": 0}}, "spec.rollout.canary.analysis.threshold"),
        ({"replicas": 0}, "spec.rollout.canary.replicas"),
        ({"drainSeconds": 3601}, "spec.rollout.canary.drainSeconds"),
        ({"analysis": {"metrics": [{"name": "orders"}]}}, "spec.rollout.canary.analysis.metrics[0].query"),
        ({"analysis": {"metrics": [{"name": "orders", "query": "up"}]}}, "spec.rollout.canary.analysis.metrics[0].thresholdRange"),
        ({"analysis": {"metrics": [{"name": "fallback_rate", "thresholdRange": {"min": 2, "max": 1}}]}}, "spec.rollout.canary.analysis.metrics[0].thresholdRange"),
        ({"analysis": {"metrics": [{"name": "fallback_rate", "thresholdRange": {"max": "0.2"}}]}}, "spec.rollout.canary.analysis.metrics[0].thresholdRange.max"),
        ({"analysis": {"metrics": [{"name": "fallback_rate", "interval": "1x"}]}}, "spec.rollout.canary.analysis.metrics[0].interval"),
        ({"analysis": {"metrics": [{"query": "up"}]}}, "spec.rollout.canary.analysis.metrics[0].name"),
        ({"analysis": {"metrics": [{"name": "handoff_rate"}, {"name": "handoff_rate"}]}}, "spec.rollout.canary.analysis.metrics"),
    ],
)
def test_errors_name_the_field(canary, field):
    with pytest.raises(SpecError) as raised:
        parse_canary(canary)
    assert str(raised.value).startswith(field + ":")


def test_unknown_strategy():
    with pytest.raises(SpecError, match="spec.rollout.strategy"):
        parse_rollout({"strategy": "BlueGreen"})


def test_spec_error_is_a_value_error():
    assert issubclass(SpecError, ValueError)
