"""`spec.rollout` of a Bot, parsed into frozen dataclasses with every default filled in.

    rollout:
      strategy: Canary            # RollingUpdate (the default) has no canary at all
      canary:
        stepWeight: 10            # default 10 (%)
        maxWeight: 50             # default 50 (%)
        replicas: 1               # default 1: Rasa replicas of the canary track
        drainSeconds: 90          # default 90: the canary's pods outlive the rollout's end by this
        steps:                    # optional; without it: stepWeight, 2*stepWeight, ... up to maxWeight
          - setWeight: 20
          - pause: {duration: 5m} # pause: {} waits until resumed
        analysis:
          interval: 1m            # default 1m: how often the checks run, and their default range
          threshold: 5            # default 5: failed checks before rollback
          prometheus: {address: http://prometheus:9090}  # default: the operator's own setting
          metrics:                # default: the four built-in checks, relative to the stable track
            - name: fallback_rate
              thresholdRange: {max: 0.2}
            - name: orders
              query: sum(rate(orders_total{namespace="{{namespace}}",track="{{track}}"}[{{interval}}]))
              thresholdRange: {min: 0.1}

The CRD validates most of this; `parse_rollout` refuses what it cannot interpret (a bad
duration, a custom metric without a query or a range) with a SpecError naming the field.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping, Union

DEFAULT_STEP_WEIGHT = 10
DEFAULT_MAX_WEIGHT = 50
DEFAULT_INTERVAL_SECONDS = 60
DEFAULT_THRESHOLD = 5
DEFAULT_REPLICAS = 1
DEFAULT_DRAIN_SECONDS = 90
# Checks that need no query: analysis.py holds their PromQL and their default ranges.
BUILT_IN_METRICS = ("fallback_rate", "action_error_rate", "p95_turn_latency", "handoff_rate")

_DURATION = re.compile(r"^([0-9]+)(s|m|h)$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600}


class SpecError(ValueError):
    """`spec.rollout` cannot be interpreted; the message starts with the field's path."""


@dataclass(frozen=True)
class SetWeight:
    """Send `weight` percent of the traffic to the canary, then analyse one interval."""

    weight: int


@dataclass(frozen=True)
class Pause:
    """Hold the current weight for `seconds`, or until resumed when None."""

    seconds: int | None = None


Step = Union[SetWeight, Pause]


@dataclass(frozen=True)
class MetricCheck:
    """One check of the analysis. With min or max set, the range is absolute on the
    canary's value (inclusive); a built-in check without either is judged relative to
    the stable track (analysis.RELATIVE_DEFAULTS). interval_seconds is the query's range,
    None for the analysis interval."""

    name: str
    query: str | None = None
    min: float | None = None
    max: float | None = None
    interval_seconds: int | None = None

    @property
    def built_in(self) -> bool:
        return self.query is None

    @property
    def absolute(self) -> bool:
        return self.min is not None or self.max is not None


BUILT_IN_CHECKS = tuple(MetricCheck(name) for name in BUILT_IN_METRICS)


@dataclass(frozen=True)
class CanarySpec:
    step_weight: int = DEFAULT_STEP_WEIGHT
    max_weight: int = DEFAULT_MAX_WEIGHT
    steps: tuple[Step, ...] = ()
    interval_seconds: int = DEFAULT_INTERVAL_SECONDS
    threshold: int = DEFAULT_THRESHOLD
    metrics: tuple[MetricCheck, ...] = BUILT_IN_CHECKS
    replicas: int = DEFAULT_REPLICAS
    drain_seconds: int = DEFAULT_DRAIN_SECONDS
    prometheus_address: str | None = None  # None: the operator's default


def parse_duration(text: Any, field: str = "duration") -> int:
    """ "30s", "5m", "1h" in seconds."""
    match = _DURATION.match(text) if isinstance(text, str) else None
    if not match:
        raise SpecError(f"{field}: Invalid value: {text!r}: a duration is a whole number of s, m or h, e.g. 30s, 5m, 1h")
    return int(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def format_duration(seconds: int) -> str:
    """The PromQL range for `seconds`: "1h", "5m" or "90s"."""
    for unit, size in (("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _number(value: Any, field: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SpecError(f"{field}: Invalid value: {value!r}: must be a number")
    return float(value)


def _integer(value: Any, default: int, low: int, high: int, field: str) -> int:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise SpecError(f"{field}: Invalid value: {value!r}: must be an integer from {low} to {high}")
    return value


def parse_step(step: Mapping[str, Any], field: str) -> Step:
    has_weight, has_pause = step.get("setWeight") is not None, "pause" in step
    if has_weight == has_pause:
        raise SpecError(f"{field}: Invalid value: needs exactly one of setWeight or pause")
    if has_weight:
        return SetWeight(_integer(step["setWeight"], 0, 0, 100, f"{field}.setWeight"))
    duration = (step.get("pause") or {}).get("duration")
    return Pause(None if duration is None else parse_duration(duration, f"{field}.pause.duration"))


def parse_metric(metric: Mapping[str, Any], field: str) -> MetricCheck:
    name = metric.get("name")
    if not isinstance(name, str) or not name:
        raise SpecError(f"{field}.name: Required value")
    query = metric.get("query") or None
    limits = metric.get("thresholdRange") or {}
    low, high = _number(limits.get("min"), f"{field}.thresholdRange.min"), _number(limits.get("max"), f"{field}.thresholdRange.max")
    if low is not None and high is not None and low > high:
        raise SpecError(f"{field}.thresholdRange: Invalid value: min {low:g} exceeds max {high:g}")
    if query is None and name not in BUILT_IN_METRICS:
        raise SpecError(f"{field}.query: Required value: {name!r} is not a built-in check ({', '.join(BUILT_IN_METRICS)})")
    if query is not None and low is None and high is None:
        raise SpecError(f"{field}.thresholdRange: Required value: a check with a query needs min or max")
    interval = metric.get("interval")
    return MetricCheck(
        name=name,
        query=query,
        min=low,
        max=high,
        interval_seconds=None if interval is None else parse_duration(interval, f"{field}.interval"),
    )


def parse_canary(canary: Mapping[str, Any] | None, field: str = "spec.rollout.canary") -> CanarySpec:
    """`spec.rollout.canary` with the defaults filled in."""
    canary = canary or {}
    analysis = canary.get("analysis") or {}
    step_weight = _integer(canary.get("stepWeight"), DEFAULT_STEP_WEIGHT, 1, 100, f"{field}.stepWeight")
    max_weight = _integer(canary.get("maxWeight"), DEFAULT_MAX_WEIGHT, 1, 100, f"{field}.maxWeight")
    if step_weight > max_weight:
        raise SpecError(f"{field}.stepWeight: Invalid value: {step_weight} exceeds maxWeight {max_weight}")
    steps = tuple(parse_step(step or {}, f"{field}.steps[{i}]") for i, step in enumerate(canary.get("steps") or []))
    for i, step in enumerate(steps):
        if isinstance(step, SetWeight) and step.weight > max_weight:
            raise SpecError(f"{field}.steps[{i}].setWeight: Invalid value: {step.weight} exceeds maxWeight {max_weight}")
    interval = analysis.get("interval")
    metrics = tuple(parse_metric(m or {}, f"{field}.analysis.metrics[{i}]") for i, m in enumerate(analysis.get("metrics") or []))
    names = [m.name for m in metrics]
    duplicate = next((n for n in names if names.count(n) > 1), None)
    if duplicate:
        raise SpecError(f"{field}.analysis.metrics: Duplicate value: {duplicate!r}")
    return CanarySpec(
        step_weight=step_weight,
        max_weight=max_weight,
        steps=steps,
        interval_seconds=DEFAULT_INTERVAL_SECONDS if interval is None else parse_duration(interval, f"{field}.analysis.interval"),
        threshold=_integer(analysis.get("threshold"), DEFAULT_THRESHOLD, 1, 100, f"{field}.analysis.threshold"),
        metrics=metrics or BUILT_IN_CHECKS,
        replicas=_integer(canary.get("replicas"), DEFAULT_REPLICAS, 1, 100, f"{field}.replicas"),
        drain_seconds=_integer(canary.get("drainSeconds"), DEFAULT_DRAIN_SECONDS, 0, 3600, f"{field}.drainSeconds"),
        prometheus_address=(analysis.get("prometheus") or {}).get("address") or None,
    )


def parse_rollout(rollout: Mapping[str, Any] | None) -> CanarySpec | None:
    """`spec.rollout` of a Bot: None for RollingUpdate (the default), else its canary."""
    rollout = rollout or {}
    strategy = rollout.get("strategy") or "RollingUpdate"
    if strategy == "RollingUpdate":
        return None
    if strategy != "Canary":
        raise SpecError(f"spec.rollout.strategy: Unsupported value: {strategy!r}: supported values: \"RollingUpdate\", \"Canary\"")
    return parse_canary(rollout.get("canary"))


def from_bot(bot: Mapping[str, Any]) -> CanarySpec | None:
    return parse_rollout((bot.get("spec") or {}).get("rollout"))
