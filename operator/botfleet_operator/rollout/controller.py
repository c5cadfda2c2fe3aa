"""One rollout tick of a Bot, inside a reconcile: read what the tracks run, run the
analysis when it is due, decide(), and say what to render and to record.

The I/O is passed in (a Deployment reader and an analysis runner), so this runs the
same against the real API server, kmock and the tests' in-memory store.
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from botfleet_operator.builders import child_name
from botfleet_operator.rollout import analysis, tracks
from botfleet_operator.rollout.canary import (
    COMMAND_ANNOTATION,
    Event,
    RolloutState,
    analysis_due,
    current_state,
    decide,
    parse_command,
)
from botfleet_operator.rollout.spec import CanarySpec, from_bot

logger = logging.getLogger(__name__)
PROMETHEUS_URL_ENV = "BOTFLEET_PROMETHEUS_URL"

DeploymentReader = Callable[[str, str], "dict[str, Any] | None"]
Analyser = Callable[[CanarySpec, str, str, float], "tuple[analysis.CheckResult, ...]"]


@dataclass
class RolloutTick:
    # charts/bot values for both tracks ({"model", "canary"}), or None: spec.model as is.
    values: dict[str, Any] | None
    # status.rollout to write; None removes it (no Canary strategy).
    rollout_status: dict[str, Any] | None
    # status.stableModel: what the stable track serves after this tick.
    stable_model: dict[str, Any]
    # (type, reason, message) Events on the Bot.
    events: list[tuple[str, str, str]] = field(default_factory=list)
    # The rollout command annotation's value, read this tick (removed once acted on).
    command_seen: str | None = None
    state: RolloutState | None = None

    @property
    def needs_ticks(self) -> bool:
        """Whether the Bot needs reconciling every rollout tick: a rollout under way, or a
        finished one whose canary still drains (its pods scale to zero at the end)."""
        if self.state is None or self.values is None:
            return False
        return self.state.canary_active or bool(self.values["canary"].get("enabled"))


def prometheus_url(canary: CanarySpec) -> str | None:
    return canary.prometheus_address or os.environ.get(PROMETHEUS_URL_ENV) or None


def analyse_with_prometheus(canary: CanarySpec, namespace: str, bot: str, now: float) -> tuple[analysis.CheckResult, ...]:
    """The analysis against the Bot's Prometheus. Runs in a reconcile's worker thread, so
    it gets an event loop of its own. Without a Prometheus every check is unknown."""
    url = prometheus_url(canary)
    if not url:
        return tuple(analysis.evaluate(check, None, None, error=f"no Prometheus: set {PROMETHEUS_URL_ENV} or spec.rollout.canary.analysis.prometheus.address") for check in canary.metrics)
    return asyncio.run(analysis.run_analysis(url, canary, namespace, bot, now))


def gateway_enabled(spec: Mapping[str, Any]) -> bool:
    return bool((spec.get("gateway") or {}).get("enabled", True))


def rollout_skipped(stable_version: str, version: str) -> tuple[str, str, str]:
    return ("Warning", "RolloutSkipped", f"no record of the stable model {stable_version} (status.stableModel): "
                                         f"model {version} is rolled out at once instead of as a canary")


def tick(bot: Mapping[str, Any], *, now: float, read_deployment: DeploymentReader, analyse: Analyser = analyse_with_prometheus) -> RolloutTick:
    """The rollout part of one reconcile of a defaulted Bot (raises SpecError for a
    canary spec it cannot interpret)."""
    metadata, spec, status = bot["metadata"], bot["spec"], bot.get("status") or {}
    name, namespace = metadata["name"], metadata["namespace"]
    spec_model = spec["model"]
    canary = from_bot(bot)
    if canary is None or not gateway_enabled(spec):
        # RollingUpdate: the stable track takes spec.model at once; no rollout to keep.
        return RolloutTick(values=None, rollout_status=None, stable_model=tracks.model_of(spec_model))
    recorded = tracks.recorded_stable_model(status)
    state = current_state(status.get("rollout"), tracks.stable_version(status), str(spec_model["version"]), now)
    events: list[tuple[str, str, str]] = []
    served = status.get("currentModelVersion")
    if state is None and recorded is None and served and served != spec_model["version"]:
        # A status from before stableModel was recorded (or lost): the old model's URL is
        # not known, so this one change cannot run as a canary. Said, not silent.
        events.append(rollout_skipped(served, spec_model["version"]))
    command_value = (metadata.get("annotations") or {}).get(COMMAND_ANNOTATION)
    if state is not None:
        if tracks.stable_model(spec_model, state, recorded) is None:
            return RolloutTick(values=None, rollout_status=None, stable_model=tracks.model_of(spec_model),
                               events=[rollout_skipped(state.stable_track_version, spec_model["version"])], command_seen=command_value)
        read = lambda component: read_deployment(namespace, child_name(name, component))  # noqa: E731
        canary_ready = tracks.serves(read("rasa-canary"), state.canary_version)
        stable_ready = tracks.serves(read("rasa"), state.stable_track_version)
        results = analyse(canary, namespace, name, now) if analysis_due(state, canary, now) else None
        if status.get("rollout") is None:  # started by this tick
            events.append(("Normal", "RolloutStarted", f"rolling out model {state.canary_version} as a canary against the stable {state.stable_version}"))
        transition = decide(state, canary, now=now, results=results, command=parse_command(command_value),
                            canary_ready=canary_ready, stable_ready=stable_ready, desired_version=str(spec_model["version"]))
        state = transition.state
        events += [(a.type, a.reason, a.message) for a in transition.actions if isinstance(a, Event)]
    values = tracks.track_values(spec_model, state, canary, recorded, now)
    assert values is not None  # the stable model was found above
    return RolloutTick(
        values=values,
        rollout_status=state.to_status() if state is not None else None,
        stable_model=values["model"],
        events=events,
        command_seen=command_value,
        state=state,
    )


def tracks_now(bot: Mapping[str, Any], now: float) -> dict[str, Any] | None:
    """The tracks' chart values from the recorded rollout alone (no analysis, no
    transition): what a child's event re-applies, the same as the last full reconcile
    rendered (or, for a rollout about to start, as the next one will). Raises SpecError
    for a canary spec it cannot read: rendering without the tracks would put spec.model
    (the canary's) on the stable track."""
    spec, status = bot["spec"], bot.get("status") or {}
    canary = from_bot(bot)  # SpecError: the caller leaves the children alone (the full reconcile reports it)
    if canary is None or not gateway_enabled(spec):
        return None
    state = current_state(status.get("rollout"), tracks.stable_version(status), str(spec["model"]["version"]), now)
    return tracks.track_values(spec["model"], state, canary, tracks.recorded_stable_model(status), now)
