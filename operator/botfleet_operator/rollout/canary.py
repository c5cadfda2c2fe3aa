"""The canary state machine, pure: `decide()` takes the last state (from the Bot's
status.rollout), the canary spec and what the operator observed in one tick, and
returns the next state and the actions to carry out. No clock, no I/O.

    Initializing --canary_ready--> Progressing <--resume-- Paused
    Progressing --all checks pass--> next step: setWeight (Progressing) or pause (Paused)
    Progressing --end of plan / promote--> Promoting --stable_ready--> Succeeded
    any active phase --failed_checks reach threshold / abort--> Failed (rolled back)
    Progressing --inconclusive_checks reach threshold in a row--> Paused (Inconclusive)

Analysis: one per interval (`analysis_due`), from the later of the step's start and the
last analysis. Any "fail" counts a failed check (cumulative over the rollout, as
Flagger's failedChecks); else any "unknown" counts an inconclusive one, which neither
advances nor fails (reset by any conclusive interval); all "pass" advance one step.
While Paused the analysis goes on, and only failures count: a bad canary holding its
weight still rolls back.

Commands (the CLI sets them in the COMMAND_ANNOTATION; the operator removes it once
decide() has seen it, so a stale one never hits the next rollout):
promote (skip the remaining steps), pause (reason Manual), resume (Paused -> on; past a
pause step), abort (-> Failed, rolled back; not once Promoting). A command the phase
does not allow is answered with a RolloutCommandIgnored Event.

A new spec.model.version (`desired_version`) while a rollout is active restarts it for
the newest version against the same stable (Flagger does the same); while Promoting,
the promoted version becomes the stable the new one is compared with. Back to the
stable version cancels the canary. After Succeeded or Failed it starts a new rollout.

The state alone says what the tracks should run (stable_track_version, canary_weight,
canary_pods_wanted): actions are the edges worth acting on and Events, and a lost action
(the operator restarted after patching the status) is repaired from the state.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Literal, Mapping, Union, cast, get_args

from botfleet_operator.rollout.analysis import CheckResult, Status
from botfleet_operator.rollout.spec import CanarySpec, Pause, Step
from botfleet_operator.rollout.spec import SetWeight as SetWeightStep
from botfleet_operator.rollout.weights import describe, plan

Phase = Literal["Initializing", "Progressing", "Paused", "Promoting", "Succeeded", "Failed"]
PHASES: tuple[Phase, ...] = get_args(Phase)
ACTIVE: frozenset[Phase] = frozenset({"Initializing", "Progressing", "Paused", "Promoting"})
TERMINAL: frozenset[Phase] = frozenset({"Succeeded", "Failed"})
Command = Literal["promote", "pause", "resume", "abort"]
COMMANDS: tuple[Command, ...] = get_args(Command)
COMMAND_ANNOTATION = "botfleet.io/rollout-command"
PAUSE_STEP, PAUSE_MANUAL, PAUSE_INCONCLUSIVE = "Step", "Manual", "Inconclusive"


# Actions: what the operator carries out, in order.
@dataclass(frozen=True)
class SetWeight:
    """Send `weight` percent of the Bot's traffic to the canary track."""

    weight: int


@dataclass(frozen=True)
class Promote:
    """The stable track takes the canary's model (state.canary_version)."""


@dataclass(frozen=True)
class Rollback:
    """All traffic back to the stable track (weight 0), which keeps
    state.stable_version; the canary track is no longer needed (ScaleCanaryToZero)."""


@dataclass(frozen=True)
class ScaleCanaryToZero:
    """The canary track is no longer needed: scale it to zero once its conversations
    have moved to stable, spec.drain_seconds after the end (canary_pods_wanted)."""


@dataclass(frozen=True)
class Event:
    """A core/v1 Event about the Bot (decisions.event_object)."""

    type: Literal["Normal", "Warning"]
    reason: str
    message: str


Action = Union[SetWeight, Promote, Rollback, ScaleCanaryToZero, Event]


@dataclass(frozen=True)
class RolloutState:
    phase: Phase
    stable_version: str
    canary_version: str
    canary_weight: int = 0
    current_step: int = 0
    failed_checks: int = 0
    inconclusive_checks: int = 0
    step_started_at: float | None = None
    last_analysis_at: float | None = None
    pause_reason: str | None = None
    last_analysis: tuple[CheckResult, ...] = ()
    message: str = ""
    finished_at: float | None = None  # when it turned Succeeded or Failed
    # The canary track stays empty until then: the previous rollout's canary drains first,
    # so no gateway still reading that rollout's routing sends its conversations to the
    # new model on the same Service (the kubelet refreshes a gateway's routing file late).
    not_before: float | None = None

    @property
    def stable_track_version(self) -> str:
        """The model the stable track should run: the canary's once it is promoted."""
        return self.canary_version if self.phase in ("Promoting", "Succeeded") else self.stable_version

    @property
    def canary_active(self) -> bool:
        """Whether the rollout is under way (the canary track runs canary_version)."""
        return self.phase in ACTIVE

    def to_status(self) -> dict[str, Any]:
        """The Bot's status.rollout: camelCase, times in epoch seconds, None fields left
        out, lastAnalysis keyed by check name. (The operator adds what it keeps beside
        the state, such as stableModel; from_status ignores unknown keys.)"""
        status: dict[str, Any] = {
            "phase": self.phase,
            "stableVersion": self.stable_version,
            "canaryVersion": self.canary_version,
            "canaryWeight": self.canary_weight,
            "currentStep": self.current_step,
            "failedChecks": self.failed_checks,
            "inconclusiveChecks": self.inconclusive_checks,
            "message": self.message,
        }
        for key, when in (("stepStartedAt", self.step_started_at), ("lastAnalysisAt", self.last_analysis_at), ("finishedAt", self.finished_at),
                          ("notBefore", self.not_before)):
            if when is not None:
                status[key] = when
        if self.pause_reason:
            status["pauseReason"] = self.pause_reason
        if self.last_analysis:
            status["lastAnalysis"] = {result.name: _result_status(result) for result in self.last_analysis}
        return status

    @classmethod
    def from_status(cls, status: Mapping[str, Any] | None) -> RolloutState | None:
        """The state in a Bot's status.rollout; None when there is none, or when it is
        unreadable (another version's, or edited by hand): the operator starts over."""
        if not status or status.get("phase") not in PHASES or not status.get("canaryVersion"):
            return None
        try:
            return cls(
                phase=cast(Phase, status["phase"]),
                stable_version=str(status.get("stableVersion") or ""),
                canary_version=str(status["canaryVersion"]),
                canary_weight=int(status.get("canaryWeight") or 0),
                current_step=int(status.get("currentStep") or 0),
                failed_checks=int(status.get("failedChecks") or 0),
                inconclusive_checks=int(status.get("inconclusiveChecks") or 0),
                step_started_at=_number(status.get("stepStartedAt")),
                last_analysis_at=_number(status.get("lastAnalysisAt")),
                finished_at=_number(status.get("finishedAt")),
                not_before=_number(status.get("notBefore")),
                pause_reason=status.get("pauseReason") or None,
                last_analysis=_sorted(_result_from_status(name, item) for name, item in (status.get("lastAnalysis") or {}).items()),
                message=str(status.get("message") or ""),
            )
        except (TypeError, ValueError, AttributeError):
            return None


@dataclass(frozen=True)
class Transition:
    state: RolloutState
    actions: tuple[Action, ...] = ()


def _result_status(result: CheckResult) -> dict[str, Any]:
    item: dict[str, Any] = {"status": result.status, "reason": result.reason}
    if result.value is not None:
        item["value"] = result.value
    if result.stable_value is not None:
        item["stableValue"] = result.stable_value
    return item


def _number(value: Any) -> float | None:
    number = None if value is None else float(value)
    return number if number is not None and math.isfinite(number) else None


def _result_from_status(name: str, item: Mapping[str, Any]) -> CheckResult:
    status = item.get("status")
    return CheckResult(
        name=name,
        status=cast(Status, status if status in ("pass", "fail", "unknown") else "unknown"),
        value=_number(item.get("value")),
        stable_value=_number(item.get("stableValue")),
        reason=str(item.get("reason") or ""),
    )


def _sorted(results: Any) -> tuple[CheckResult, ...]:
    return tuple(sorted(results, key=lambda r: r.name))


def parse_command(value: str | None) -> Command | None:
    """The command in the COMMAND_ANNOTATION's value (case and spaces ignored)."""
    text = (value or "").strip().lower()
    return cast(Command, text) if text in COMMANDS else None


def start(stable_version: str, canary_version: str, now: float) -> RolloutState:
    """A rollout of canary_version against the stable track's stable_version."""
    return RolloutState(
        phase="Initializing",
        stable_version=stable_version,
        canary_version=canary_version,
        message=_waiting(canary_version),
    )


def _waiting(version: str) -> str:
    return f"waiting for the canary track to serve model {version}"


def current_state(status: Mapping[str, Any] | None, current_version: str | None, desired_version: str, now: float) -> RolloutState | None:
    """The state to decide from: the one in status.rollout, else a new rollout when the
    stable track runs another version than spec.model.version; None when no canary is
    needed (the Bot's first model, or the version already served)."""
    state = RolloutState.from_status(status)
    if state is not None:
        return state
    if not current_version or current_version == desired_version:
        return None
    return start(current_version, desired_version, now)


def canary_pods_wanted(state: RolloutState, spec: CanarySpec, now: float) -> bool:
    """Whether the canary track should have pods: while the rollout is under way, and
    for drain_seconds after it ended (the gateway moves the canary's conversations to
    stable meanwhile); not before `not_before` (the previous canary's drain)."""
    if state.not_before is not None and now < state.not_before:
        return False
    if state.phase in ACTIVE:
        return True
    return state.finished_at is not None and now - state.finished_at < spec.drain_seconds


def analysis_due(state: RolloutState, spec: CanarySpec, now: float) -> bool:
    """Whether the operator should run the analysis before this tick's decide()."""
    if state.phase not in ("Progressing", "Paused") or state.step_started_at is None:
        return False
    since = max(state.step_started_at, state.last_analysis_at or state.step_started_at)
    return now - since >= spec.interval_seconds


def decide(
    state: RolloutState,
    spec: CanarySpec,
    *,
    now: float,
    results: tuple[CheckResult, ...] | None = None,
    command: Command | None = None,
    canary_ready: bool = False,
    stable_ready: bool = False,
    desired_version: str | None = None,
) -> Transition:
    """The next state and actions.

    results: this tick's analysis, or None; counted only when analysis_due().
    command: a command from the COMMAND_ANNOTATION, or None.
    canary_ready: the canary track's pods are ready and serve state.canary_version.
    stable_ready: the stable track has rolled out state.stable_track_version.
    desired_version: the Bot's spec.model.version now (None: unchanged).
    """
    if desired_version is not None and desired_version != state.canary_version:
        return _new_version(state, desired_version, now, spec.drain_seconds)
    steps = plan(spec)
    prefix: tuple[Action, ...] = ()
    if command is not None:
        commanded = _command(state, steps, command, now)
        if isinstance(commanded, Transition):
            return commanded
        prefix = (commanded,)
    if state.phase in TERMINAL:
        return Transition(state, prefix)
    if state.phase == "Initializing":
        following = _enter(state, steps, 0, now) if canary_ready else Transition(state)
    elif state.phase == "Promoting":
        following = _succeed(state, now) if stable_ready else Transition(state)
    else:
        following = _progress(state, spec, steps, now, results)
    return Transition(following.state, prefix + following.actions)


def _new_version(state: RolloutState, version: str, now: float, drain_seconds: int = 0) -> Transition:
    was_active = state.phase in ACTIVE
    stable = state.stable_track_version  # while Promoting, the promoted version is the stable one
    if version == stable:
        message = f"spec.model.version is back to the stable {stable}: canary {state.canary_version} withdrawn"
        finished = now if was_active else (state.finished_at or now)  # a failed canary's drain goes on
        settled = RolloutState(phase="Succeeded", stable_version=stable, canary_version=stable, message=message, finished_at=finished)
        return Transition(settled, (Rollback(), Event("Normal", "RolloutCancelled", message)) if was_active else ())
    fresh = start(stable, version, now)
    # The old canary's pods go now; the new one's start once its drain is over.
    draining_until = now + drain_seconds if was_active else (state.finished_at or now) + drain_seconds
    if draining_until > now and state.canary_version != state.stable_version:
        fresh = replace(fresh, not_before=draining_until,
                        message=f"waiting for the canary of {state.canary_version} to drain, then for the canary track to serve model {version}")
    if not was_active:
        return Transition(fresh, (Event("Normal", "RolloutStarted", f"rolling out model {version} against the stable {stable}"),))
    message = f"model {version} supersedes the canary {state.canary_version}: rollout restarted against the stable {stable}"
    return Transition(replace(fresh, message=message), (SetWeight(0), Event("Normal", "RolloutRestarted", message)))


def allows(state: RolloutState, command: Command) -> bool:
    """Whether the rollout's phase takes `command` now (what _command acts on; the CLI
    refuses the rest before setting the annotation)."""
    phase = state.phase
    before_promotion = phase in ("Initializing", "Progressing", "Paused")
    if command in ("abort", "promote"):
        return before_promotion
    if command == "pause":
        return phase in ("Initializing", "Progressing") or (phase == "Paused" and state.pause_reason != PAUSE_MANUAL)
    return phase == "Paused"


def _command(state: RolloutState, steps: tuple[Step, ...], command: Command, now: float) -> Transition | Event:
    """The command's transition, or the Event saying why the phase does not allow it."""
    phase = state.phase
    before_promotion = phase in ("Initializing", "Progressing", "Paused")
    if command == "abort" and before_promotion:
        message = f"rollout of model {state.canary_version} aborted: the stable track keeps {state.stable_version}"
        failed = replace(state, phase="Failed", canary_weight=0, pause_reason=None, message=f"Aborted: {message}", finished_at=now)
        return Transition(failed, (Rollback(), Event("Warning", "RolloutAborted", message)))
    if command == "promote" and before_promotion:
        return _promote(state, f"promoted by command at step {min(state.current_step, len(steps)) + 1}/{len(steps)}")
    if command == "pause" and (phase in ("Initializing", "Progressing") or (phase == "Paused" and state.pause_reason != PAUSE_MANUAL)):
        message = f"paused by command at canary weight {state.canary_weight}% (resume to continue)"
        paused = replace(state, phase="Paused", pause_reason=PAUSE_MANUAL, message=message)
        return Transition(paused, (Event("Normal", "RolloutPaused", message),))
    if command == "resume" and phase == "Paused":
        resumed = replace(state, inconclusive_checks=0, pause_reason=None)
        event = Event("Normal", "RolloutResumed", f"resumed by command (was paused: {state.pause_reason or 'unknown'})")
        if state.step_started_at is None:  # paused before the canary was first ready
            return Transition(replace(resumed, phase="Initializing", message=_waiting(state.canary_version)), (event,))
        if not isinstance(_step(steps, state.current_step), SetWeightStep):  # past a pause step, as Argo's resume
            entered = _enter(resumed, steps, state.current_step + 1, now)
            return Transition(entered.state, (event, *entered.actions))
        return Transition(replace(resumed, phase="Progressing", message=f"resumed at {_where(steps, state.current_step)}"), (event,))
    return Event("Normal", "RolloutCommandIgnored", f"{command} ignored: the rollout of model {state.canary_version} is {phase}")


def _step(steps: tuple[Step, ...], index: int) -> Step | None:
    return steps[index] if 0 <= index < len(steps) else None


def _where(steps: tuple[Step, ...], index: int) -> str:
    step = _step(steps, index)
    return f"step {index + 1}/{len(steps)}: {describe(step)}" if step is not None else "the end of the plan"


def _enter(state: RolloutState, steps: tuple[Step, ...], index: int, now: float) -> Transition:
    """Step `index` in effect from `now`; past the last one, the promotion."""
    step = _step(steps, index)
    if step is None:
        return _promote(state, f"all {len(steps)} steps passed")
    if isinstance(step, SetWeightStep):
        message = f"{_where(steps, index)}, model {state.canary_version}"
        entered = replace(state, phase="Progressing", current_step=index, canary_weight=step.weight, step_started_at=now, pause_reason=None, message=message)
        return Transition(entered, (SetWeight(step.weight), Event("Normal", "RolloutProgressing", message)))
    until = "until resumed" if step.seconds is None else f"for {step.seconds}s"
    message = f"step {index + 1}/{len(steps)}: paused {until} at canary weight {state.canary_weight}%"
    paused = replace(state, phase="Paused", current_step=index, step_started_at=now, pause_reason=PAUSE_STEP, message=message)
    return Transition(paused, (Event("Normal", "RolloutPaused", message),))


def _promote(state: RolloutState, why: str) -> Transition:
    message = f"{why}: the stable track takes model {state.canary_version}"
    promoting = replace(state, phase="Promoting", pause_reason=None, message=message)
    return Transition(promoting, (Promote(), Event("Normal", "RolloutPromoting", message)))


def _succeed(state: RolloutState, now: float) -> Transition:
    message = f"model {state.canary_version} promoted: the stable track serves it (was {state.stable_version})"
    succeeded = replace(state, phase="Succeeded", canary_weight=0, pause_reason=None, message=message, finished_at=now)
    return Transition(succeeded, (SetWeight(0), ScaleCanaryToZero(), Event("Normal", "RolloutSucceeded", message)))


def _progress(state: RolloutState, spec: CanarySpec, steps: tuple[Step, ...], now: float, results: tuple[CheckResult, ...] | None) -> Transition:
    """Progressing or Paused: this tick's analysis, then a step pause that has run out."""
    actions: tuple[Action, ...] = ()
    if results is not None and analysis_due(state, spec, now):
        analysed = _analyse(state, spec, steps, results, now)
        state, actions = analysed.state, analysed.actions
    step = _step(steps, state.current_step)
    if state.phase == "Paused" and state.pause_reason == PAUSE_STEP and state.step_started_at is not None:
        seconds = step.seconds if isinstance(step, Pause) else 0
        if seconds is not None and now - state.step_started_at >= seconds:
            entered = _enter(state, steps, state.current_step + 1, now)
            return Transition(entered.state, actions + entered.actions)
    return Transition(state, actions)


def _analyse(state: RolloutState, spec: CanarySpec, steps: tuple[Step, ...], results: tuple[CheckResult, ...], now: float) -> Transition:
    analysed = replace(state, last_analysis_at=now, last_analysis=_sorted(results))
    failing = [r for r in results if r.status == "fail"]
    unknown = [r for r in results if r.status == "unknown"]
    if failing:
        failed = state.failed_checks + 1
        summary = "; ".join(r.reason for r in failing)
        analysed = replace(analysed, failed_checks=failed, inconclusive_checks=0)
        if failed >= spec.threshold:
            message = f"model {state.canary_version} rolled back to {state.stable_version} after {failed} failed analyses (threshold {spec.threshold}): {summary}"
            rolled_back = replace(analysed, phase="Failed", canary_weight=0, pause_reason=None, message=message, finished_at=now)
            return Transition(rolled_back, (Rollback(), Event("Warning", "RolloutFailed", message)))
        message = f"analysis failed ({failed}/{spec.threshold}) at {_where(steps, state.current_step)}: {summary}"
        return Transition(replace(analysed, message=message), (Event("Warning", "AnalysisFailed", message),))
    if state.phase == "Paused":  # holding the weight: only failures count
        return Transition(analysed if unknown else replace(analysed, inconclusive_checks=0))
    if unknown:
        inconclusive = state.inconclusive_checks + 1
        summary = "; ".join(r.reason for r in unknown)
        analysed = replace(analysed, inconclusive_checks=inconclusive)
        if inconclusive >= spec.threshold:
            message = f"paused after {inconclusive} inconclusive analyses in a row at canary weight {state.canary_weight}% (resume to continue): {summary}"
            paused = replace(analysed, phase="Paused", pause_reason=PAUSE_INCONCLUSIVE, message=message)
            return Transition(paused, (Event("Warning", "RolloutInconclusive", message),))
        message = f"analysis inconclusive ({inconclusive}/{spec.threshold}) at {_where(steps, state.current_step)}: {summary}"
        return Transition(replace(analysed, message=message))
    return _enter(replace(analysed, inconclusive_checks=0), steps, state.current_step + 1, now)
