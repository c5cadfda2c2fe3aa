"""The checks of a canary analysis: their PromQL, the verdict on one value, and the
Prometheus client that fetches the values. Only `query` and `run_analysis` do I/O.

Every Rasa pod's metrics carry the target labels namespace, bot, component and track
(added at scrape); a check selects one track with
`namespace="<ns>", bot="<bot>", track="canary"|"stable"` over the range `[<interval>]`
(the check's own interval, else the analysis interval).

Built-in checks (lower is better for all four), each queried on both tracks:

    fallback_rate      NLU fallbacks / messages in
    action_error_rate  failed action-server calls / action-server calls
    p95_turn_latency   95th percentile of botfleet_turn_duration_seconds, in seconds
    handoff_rate       handoffs to a human agent started / messages in

The ratios count a numerator without series as 0 while the track had messages in (the
counters are labelled, so a canary that never fell back has no fallback series at all),
and have no value when the track got no message in the range.

Verdicts:
- With a thresholdRange (min and/or max, inclusive), the range is absolute on the
  canary's value; the stable track's value is shown, never used.
- A built-in check without a thresholdRange is relative to the stable track: it passes
  while canary <= max(stable * factor, stable + margin) (RELATIVE_DEFAULTS): 50% worse
  than stable is tolerated, and so is a small absolute margin, so a stable at 0 does not
  fail the canary for a single fallback.
- A custom check (with `query`) is evaluated on the canary against its thresholdRange.
  Its query may use the placeholders {{namespace}}, {{bot}}, {{track}} ("canary") and
  {{interval}} (a PromQL range such as "1m"); the stable value is fetched for display
  when the query uses {{track}}.
- "unknown" when there is no value: no series, NaN or Inf (0/0 when the canary got no
  traffic), or a failed query (Prometheus unreachable, an HTTP error, bad PromQL, a
  result of several series); a relative check also when the stable value is missing.
"""

from __future__ import annotations

import asyncio
import json
import math
from dataclasses import dataclass
from typing import Any, Literal, cast

import aiohttp

from botfleet_operator.rollout.spec import CanarySpec, MetricCheck, format_duration

CANARY_TRACK = "canary"
STABLE_TRACK = "stable"
DEFAULT_QUERY_TIMEOUT = 10.0
Status = Literal["pass", "fail", "unknown"]
PLACEHOLDERS = ("{{namespace}}", "{{bot}}", "{{track}}", "{{interval}}")


@dataclass(frozen=True)
class Relative:
    """A built-in check's default: the canary may exceed the stable value by `factor`
    times, or by `margin` in absolute terms, whichever allows more."""

    factor: float
    margin: float

    def limit(self, stable: float) -> float:
        return max(stable * self.factor, stable + self.margin)


RELATIVE_DEFAULTS = {
    "fallback_rate": Relative(1.5, 0.05),  # 5 points more of the messages falling back
    "action_error_rate": Relative(1.5, 0.02),  # a failed action is a broken turn: 2 points
    "p95_turn_latency": Relative(1.5, 0.25),  # seconds; the buckets near 0.25-0.5 s are coarse
    "handoff_rate": Relative(1.5, 0.05),
}


def selector(namespace: str, bot: str, track: str) -> str:
    def quoted(value: str) -> str:
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'

    return f"namespace={quoted(namespace)}, bot={quoted(bot)}, track={quoted(track)}"


def _ratio(numerator: str, denominator: str, sel: str, rng: str) -> str:
    messages = f'sum(rate(botfleet_messages_total{{{sel}, direction="in"}}[{rng}]))'
    return (
        f"(sum(rate({numerator}{{{sel}}}[{rng}])) / (sum(rate({denominator}[{rng}])) > 0))"
        f" or (({messages}) > 0) * 0"
    )


def built_in_query(name: str, sel: str, rng: str) -> str:
    messages_in = f'botfleet_messages_total{{{sel}, direction="in"}}'
    if name == "fallback_rate":
        return _ratio("botfleet_nlu_fallbacks_total", messages_in, sel, rng)
    if name == "action_error_rate":
        return _ratio("botfleet_action_server_errors_total", f"botfleet_action_server_calls_total{{{sel}}}", sel, rng)
    if name == "p95_turn_latency":
        return f"histogram_quantile(0.95, sum by (le) (rate(botfleet_turn_duration_seconds_bucket{{{sel}}}[{rng}])))"
    if name == "handoff_rate":
        return _ratio("botfleet_handoffs_started_total", messages_in, sel, rng)
    raise KeyError(f"no built-in check named {name!r}")


def render(check: MetricCheck, spec: CanarySpec, namespace: str, bot: str, track: str) -> str:
    """The PromQL of `check` on one track."""
    rng = format_duration(check.interval_seconds or spec.interval_seconds)
    if check.query is None:
        return built_in_query(check.name, selector(namespace, bot, track), rng)
    values = {"{{namespace}}": namespace, "{{bot}}": bot, "{{track}}": track, "{{interval}}": rng}
    text = check.query
    for placeholder, value in values.items():
        text = text.replace(placeholder, value)
    return text


def compares_stable(check: MetricCheck) -> bool:
    """Whether the verdict depends on the stable track's value."""
    return check.query is None and not check.absolute


def queries_stable(check: MetricCheck) -> bool:
    """Whether the stable track is queried at all (built-ins always, for display)."""
    return check.query is None or "{{track}}" in check.query


@dataclass(frozen=True)
class CheckResult:
    """One check's verdict. value and stable_value are finite numbers or None."""

    name: str
    status: Status
    value: float | None
    stable_value: float | None
    reason: str


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _fmt(value: float) -> str:
    return f"{value:.4g}"


def _range_text(low: float | None, high: float | None) -> str:
    return f"[{'-inf' if low is None else _fmt(low)}, {'+inf' if high is None else _fmt(high)}]"


def evaluate(check: MetricCheck, canary_value: float | None, stable_value: float | None, *, error: str | None = None) -> CheckResult:
    """The verdict on one check: `error` is the failed query's message, if any."""
    stable = _finite(stable_value)

    def result(status: Status, reason: str) -> CheckResult:
        return CheckResult(check.name, status, _finite(canary_value), stable, reason)

    if error:
        return result("unknown", f"{check.name}: query failed: {error}")
    if canary_value is None:
        return result("unknown", f"{check.name}: no data (no series: the canary got no traffic in the range?)")
    if not math.isfinite(canary_value):
        return result("unknown", f"{check.name}: the canary's value is {canary_value} (no traffic in the range?)")
    value = canary_value
    if check.absolute:
        if (check.min is not None and value < check.min) or (check.max is not None and value > check.max):
            return result("fail", f"{check.name} {_fmt(value)} outside {_range_text(check.min, check.max)}")
        return result("pass", f"{check.name} {_fmt(value)} within {_range_text(check.min, check.max)}")
    relative = RELATIVE_DEFAULTS.get(check.name)
    if relative is None or check.query is not None:
        return result("unknown", f"{check.name}: no thresholdRange to judge the value by")
    if stable is None:
        return result("unknown", f"{check.name}: no stable value to compare with (stable {stable_value})")
    limit = relative.limit(stable)
    bound = f"max(stable {_fmt(stable)} x {relative.factor:g}, stable + {relative.margin:g}) = {_fmt(limit)}"
    if value > limit:
        return result("fail", f"{check.name} {_fmt(value)} above {bound}")
    return result("pass", f"{check.name} {_fmt(value)} within {bound}")


@dataclass(frozen=True)
class QueryResult:
    """One scalar from Prometheus: value None without error means no series."""

    value: float | None
    error: str | None = None


def parse_response(body: Any) -> QueryResult:
    """The scalar in an /api/v1/query answer: a vector of one sample, or a scalar."""
    if not isinstance(body, dict):
        return QueryResult(None, "not a Prometheus API answer")
    if body.get("status") != "success":
        return QueryResult(None, f"{body.get('errorType') or 'error'}: {body.get('error') or 'unknown error'}")
    data = body.get("data") or {}
    kind, found = data.get("resultType"), cast(Any, data.get("result"))
    try:
        if kind == "scalar":
            return QueryResult(float(found[1]))
        if kind == "vector":
            if not found:
                return QueryResult(None)
            if len(found) > 1:
                labels = ", ".join(json.dumps(sample.get("metric") or {}, sort_keys=True) for sample in found[:3])
                return QueryResult(None, f"{len(found)} series, one expected: {labels}")
            return QueryResult(float(found[0]["value"][1]))
    except (TypeError, KeyError, IndexError, ValueError) as exc:
        return QueryResult(None, f"malformed {kind} result: {exc}")
    return QueryResult(None, f"a {kind} result, one sample or a scalar expected")


async def _get(session: aiohttp.ClientSession, url: str, params: dict[str, str], timeout: float) -> QueryResult:
    async with session.get(url, params=params, timeout=aiohttp.ClientTimeout(total=timeout)) as response:
        text = await response.text()
    try:
        body = json.loads(text)
    except ValueError:
        return QueryResult(None, f"HTTP {response.status}: {text[:200].strip()}")
    found = parse_response(body)
    if found.error and response.status != 200:
        return QueryResult(None, f"HTTP {response.status}: {found.error}")
    return found


async def query(
    base_url: str,
    promql: str,
    *,
    timeout: float,
    time: float | None = None,
    session: aiohttp.ClientSession | None = None,
) -> QueryResult:
    """An instant query (/api/v1/query) at `time` (None: Prometheus's now). Never raises
    for an unreachable server, an HTTP error or bad PromQL: they come back as `error`."""
    if not base_url:
        return QueryResult(None, "no Prometheus URL configured")
    url = base_url.rstrip("/") + "/api/v1/query"
    params = {"query": promql}
    if time is not None:
        params["time"] = f"{time:.3f}"
    try:
        if session is not None:
            return await _get(session, url, params, timeout)
        async with aiohttp.ClientSession() as own:
            return await _get(own, url, params, timeout)
    except asyncio.TimeoutError:
        return QueryResult(None, f"no answer from {base_url} within {timeout:g}s")
    except Exception as exc:  # aiohttp's errors, OSError, a bad URL: all mean "no value"
        return QueryResult(None, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)


async def run_analysis(
    base_url: str,
    spec: CanarySpec,
    namespace: str,
    bot: str,
    now: float | None,
    *,
    timeout: float = DEFAULT_QUERY_TIMEOUT,
) -> tuple[CheckResult, ...]:
    """Every check of `spec` on the canary (and the stable track where it is compared or
    shown), evaluated at `now` (epoch seconds; None: Prometheus's now), in spec order."""
    async with aiohttp.ClientSession() as session:

        async def fetch(check: MetricCheck, track: str) -> QueryResult:
            return await query(base_url, render(check, spec, namespace, bot, track), timeout=timeout, time=now, session=session)

        async def judge(check: MetricCheck) -> CheckResult:
            canary = fetch(check, CANARY_TRACK)
            if not queries_stable(check):
                found = await canary
                return evaluate(check, found.value, None, error=found.error)
            found, stable = await asyncio.gather(canary, fetch(check, STABLE_TRACK))
            error = found.error
            if error is None and stable.error is not None and compares_stable(check):
                error = f"stable track: {stable.error}"
            return evaluate(check, found.value, stable.value, error=error)

        return tuple(await asyncio.gather(*(judge(check) for check in spec.metrics)))
