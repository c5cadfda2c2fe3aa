"""The canary state machine, one transition at a time: start, progress, analysis counting
(failed and inconclusive), pauses (step, manual, inconclusive), commands, a newer model,
and the state's round trip through the Bot's status."""

import json
from dataclasses import replace

import pytest

from botfleet_operator.rollout.analysis import CheckResult
from botfleet_operator.rollout.canary import (
    COMMANDS,
    Event,
    Promote,
    Rollback,
    RolloutState,
    ScaleCanaryToZero,
    SetWeight,
    Transition,
    analysis_due,
    canary_pods_wanted,
    current_state,
    decide,
    parse_command,
    start,
)
from botfleet_operator.rollout.spec import CanarySpec, Pause
from botfleet_operator.rollout.spec import SetWeight as Step

T0 = 1_800_000_000.5
SPEC = CanarySpec(step_weight=20, max_weight=40, interval_seconds=60, threshold=3)  # plan: 20, 40
PASS = (CheckResult("fallback_rate", "pass", 0.1, 0.1, "fallback_rate 0.1 within ..."), CheckResult("p95_turn_latency", "pass", 0.2, 0.2, "ok"))
FAIL = (CheckResult("fallback_rate", "fail", 0.5, 0.1, "fallback_rate 0.5 above max(stable 0.1 x 1.5, stable + 0.05) = 0.15"), PASS[1])
UNKNOWN = (CheckResult("fallback_rate", "unknown", None, 0.1, "fallback_rate: no data"), PASS[1])
BOTH = (FAIL[0], CheckResult("p95_turn_latency", "unknown", None, None, "p95_turn_latency: query failed"))


def events(transition):
    return [(a.type, a.reason) for a in transition.actions if isinstance(a, Event)]


def non_events(transition):
    return [a for a in transition.actions if not isinstance(a, Event)]


def progressing(spec=SPEC, now=T0):
    """A rollout of v2 against v1, its canary ready at `now`: at the first step."""
    return decide(start("v1", "v2", now), spec, now=now, canary_ready=True).state


def tick(state, seconds, results=None, spec=SPEC, **inputs):
    """decide() `seconds` after the later of the step's start and the last analysis."""
    clock = max(state.step_started_at, state.last_analysis_at or state.step_started_at)
    return decide(state, spec, now=clock + seconds, results=results, **inputs)


# Start and Initializing


def test_start():
    state = start("v1", "v2", T0)
    assert (state.phase, state.canary_weight, state.current_step) == ("Initializing", 0, 0)
    assert (state.stable_version, state.canary_version) == ("v1", "v2")
    assert (state.failed_checks, state.inconclusive_checks, state.step_started_at, state.last_analysis_at, state.finished_at) == (0, 0, None, None, None)
    assert state.canary_active and state.stable_track_version == "v1"


def test_initializing_waits_for_the_canary():
    state = start("v1", "v2", T0)
    assert decide(state, SPEC, now=T0 + 600, results=FAIL) == Transition(state, ())
    assert not analysis_due(state, SPEC, T0 + 600)


def test_canary_ready_starts_the_first_step():
    t = decide(start("v1", "v2", T0), SPEC, now=T0 + 30, canary_ready=True)
    assert (t.state.phase, t.state.canary_weight, t.state.current_step, t.state.step_started_at) == ("Progressing", 20, 0, T0 + 30)
    assert non_events(t) == [SetWeight(20)]
    assert events(t) == [("Normal", "RolloutProgressing")]
    assert t.state.message == "step 1/2: canary weight 20%, model v2"


# Analysis timing


def test_analysis_is_due_one_interval_after_the_step_or_the_last_analysis():
    state = progressing()
    assert not analysis_due(state, SPEC, T0 + 59)
    assert analysis_due(state, SPEC, T0 + 60)
    failed = decide(state, SPEC, now=T0 + 60, results=FAIL).state
    assert failed.last_analysis_at == T0 + 60
    assert not analysis_due(failed, SPEC, T0 + 119)
    assert analysis_due(failed, SPEC, T0 + 120)


def test_results_before_the_interval_are_ignored():
    state = progressing()
    assert decide(state, SPEC, now=T0 + 30, results=FAIL) == Transition(state, ())
    assert decide(state, SPEC, now=T0 + 30, results=PASS) == Transition(state, ())


def test_no_results_when_due_changes_nothing():
    state = progressing()
    assert decide(state, SPEC, now=T0 + 300) == Transition(state, ())


# Passing: through the plan to the promotion


def test_passing_analyses_walk_the_plan_then_promote_then_succeed():
    state = progressing()
    t = tick(state, 60, PASS)
    assert (t.state.phase, t.state.canary_weight, t.state.current_step) == ("Progressing", 40, 1)
    assert non_events(t) == [SetWeight(40)]
    assert t.state.last_analysis == PASS and t.state.last_analysis_at == T0 + 60 and t.state.step_started_at == T0 + 60

    t = tick(t.state, 60, PASS)
    assert (t.state.phase, t.state.canary_weight) == ("Promoting", 40)
    assert non_events(t) == [Promote()]
    assert events(t) == [("Normal", "RolloutPromoting")]
    assert t.state.stable_track_version == "v2" and t.state.canary_active

    promoting = t.state
    assert decide(promoting, SPEC, now=T0 + 500, results=FAIL) == Transition(promoting, ())
    assert not analysis_due(promoting, SPEC, T0 + 500)

    t = decide(promoting, SPEC, now=T0 + 500, stable_ready=True)
    assert (t.state.phase, t.state.canary_weight) == ("Succeeded", 0)
    assert non_events(t) == [SetWeight(0), ScaleCanaryToZero()]
    assert events(t) == [("Normal", "RolloutSucceeded")]
    assert t.state.stable_track_version == "v2" and not t.state.canary_active and t.state.finished_at == T0 + 500
    assert decide(t.state, SPEC, now=T0 + 900, results=PASS, stable_ready=True, canary_ready=True) == Transition(t.state, ())


def test_default_plan_timeline():
    spec = CanarySpec()
    state, weights = progressing(spec), []
    while state.phase == "Progressing":
        weights.append(state.canary_weight)
        state = tick(state, 60, PASS, spec=spec).state
    assert weights == [10, 20, 30, 40, 50]
    assert state.phase == "Promoting" and state.canary_weight == 50


def test_a_plan_that_starts_with_a_pause():
    spec = replace(SPEC, steps=(Pause(None), Step(30)))
    t = decide(start("v1", "v2", T0), spec, now=T0, canary_ready=True)
    assert (t.state.phase, t.state.pause_reason, t.state.canary_weight) == ("Paused", "Step", 0)


# Failed checks


def test_a_failed_check_is_counted_and_holds_the_step():
    t = tick(progressing(), 60, FAIL)
    assert (t.state.phase, t.state.failed_checks, t.state.current_step, t.state.canary_weight) == ("Progressing", 1, 0, 20)
    assert non_events(t) == []
    assert events(t) == [("Warning", "AnalysisFailed")]
    assert "analysis failed (1/3)" in t.state.message and "fallback_rate 0.5" in t.state.message


def test_failed_checks_are_cumulative_and_the_threshold_rolls_back():
    state = tick(progressing(), 60, FAIL).state
    state = tick(state, 60, PASS).state  # passes, advances: the failure stays counted
    assert (state.failed_checks, state.canary_weight) == (1, 40)
    state = tick(state, 60, FAIL).state
    assert (state.phase, state.failed_checks) == ("Progressing", 2)
    t = tick(state, 60, FAIL)
    assert (t.state.phase, t.state.failed_checks, t.state.canary_weight) == ("Failed", 3, 0)
    assert non_events(t) == [Rollback()]
    [event] = [a for a in t.actions if isinstance(a, Event)]
    assert (event.type, event.reason) == ("Warning", "RolloutFailed")
    assert "fallback_rate 0.5 above max(stable 0.1 x 1.5, stable + 0.05) = 0.15" in event.message
    assert "v2 rolled back to v1 after 3 failed analyses (threshold 3)" in event.message
    assert t.state.stable_track_version == "v1" and not t.state.canary_active
    assert t.state.finished_at == T0 + 240


def test_threshold_one_fails_at_once():
    t = tick(progressing(replace(SPEC, threshold=1)), 60, FAIL, spec=replace(SPEC, threshold=1))
    assert t.state.phase == "Failed"


def test_failed_is_final():
    failed = replace(progressing(), phase="Failed", canary_weight=0)
    assert decide(failed, SPEC, now=T0 + 999, results=PASS, canary_ready=True) == Transition(failed, ())


def test_a_failure_with_unknowns_counts_as_a_failure():
    state = replace(progressing(), inconclusive_checks=2)
    t = tick(state, 60, BOTH)
    assert (t.state.failed_checks, t.state.inconclusive_checks) == (1, 0)


# Inconclusive analyses


def test_an_unknown_neither_advances_nor_fails():
    t = tick(progressing(), 60, UNKNOWN)
    assert (t.state.phase, t.state.inconclusive_checks, t.state.failed_checks, t.state.current_step) == ("Progressing", 1, 0, 0)
    assert t.actions == ()
    assert "analysis inconclusive (1/3)" in t.state.message and t.state.last_analysis == UNKNOWN


def test_a_conclusive_interval_resets_the_inconclusive_count():
    state = tick(tick(progressing(), 60, UNKNOWN).state, 60, UNKNOWN).state
    assert state.inconclusive_checks == 2
    passed = tick(state, 60, PASS).state
    assert (passed.inconclusive_checks, passed.canary_weight) == (0, 40)
    failed = tick(state, 60, FAIL).state
    assert (failed.inconclusive_checks, failed.failed_checks) == (0, 1)


def test_inconclusive_threshold_in_a_row_pauses():
    state = progressing()
    for _ in range(2):
        state = tick(state, 60, UNKNOWN).state
    t = tick(state, 60, UNKNOWN)
    assert (t.state.phase, t.state.pause_reason, t.state.inconclusive_checks, t.state.canary_weight) == ("Paused", "Inconclusive", 3, 20)
    assert events(t) == [("Warning", "RolloutInconclusive")]
    assert "fallback_rate: no data" in t.state.message

    paused = t.state
    later = tick(paused, 60, UNKNOWN).state  # still analysed while paused; unknowns not counted
    assert (later.phase, later.inconclusive_checks) == ("Paused", 3)
    assert tick(paused, 60, PASS).state.phase == "Paused"  # a pass does not resume it

    t = decide(later, SPEC, now=later.last_analysis_at + 1, command="resume")
    assert (t.state.phase, t.state.pause_reason, t.state.inconclusive_checks, t.state.current_step) == ("Progressing", None, 0, 0)
    assert events(t) == [("Normal", "RolloutResumed")]


# Pauses


def test_step_pause_with_duration():
    spec = replace(SPEC, steps=(Step(10), Pause(120), Step(30)))
    state = progressing(spec)
    t = tick(state, 60, PASS, spec=spec)
    assert (t.state.phase, t.state.pause_reason, t.state.canary_weight, t.state.current_step) == ("Paused", "Step", 10, 1)
    assert events(t) == [("Normal", "RolloutPaused")] and non_events(t) == []
    paused_at = t.state.step_started_at
    assert paused_at == T0 + 60

    still = decide(t.state, spec, now=paused_at + 119)
    assert still.state == t.state
    t = decide(t.state, spec, now=paused_at + 120)
    assert (t.state.phase, t.state.canary_weight, t.state.current_step, t.state.pause_reason) == ("Progressing", 30, 2, None)
    assert non_events(t) == [SetWeight(30)]


def test_a_zero_pause_passes_at_once():
    spec = replace(SPEC, steps=(Step(10), Pause(0), Step(30)))
    t = tick(progressing(spec), 60, PASS, spec=spec)
    assert (t.state.phase, t.state.canary_weight) == ("Progressing", 30)


def test_analysis_goes_on_during_a_pause_and_failures_count():
    spec = replace(SPEC, steps=(Step(10), Pause(None), Step(30)))
    paused = tick(progressing(spec), 60, PASS, spec=spec).state
    assert analysis_due(paused, spec, paused.step_started_at + 60)
    passed = tick(paused, 60, PASS, spec=spec).state
    assert (passed.phase, passed.current_step, passed.last_analysis_at) == ("Paused", 1, paused.step_started_at + 60)
    state = paused
    for count in (1, 2):
        state = tick(state, 60, FAIL, spec=spec).state
        assert (state.phase, state.failed_checks) == ("Paused", count)
    t = tick(state, 60, FAIL, spec=spec)
    assert t.state.phase == "Failed" and non_events(t) == [Rollback()]


def test_pause_until_resumed():
    spec = replace(SPEC, steps=(Step(10), Pause(None), Step(30)))
    paused = tick(progressing(spec), 60, PASS, spec=spec).state
    assert decide(paused, spec, now=T0 + 10**6).state == paused
    t = decide(paused, spec, now=T0 + 10**6, command="resume")
    assert (t.state.phase, t.state.canary_weight, t.state.current_step) == ("Progressing", 30, 2)
    assert events(t) == [("Normal", "RolloutResumed"), ("Normal", "RolloutProgressing")]
    assert non_events(t) == [SetWeight(30)]


def test_manual_pause_and_resume():
    state = progressing()
    t = decide(state, SPEC, now=T0 + 10, command="pause")
    assert (t.state.phase, t.state.pause_reason, t.state.canary_weight) == ("Paused", "Manual", 20)
    assert events(t) == [("Normal", "RolloutPaused")]
    paused = t.state
    assert decide(paused, SPEC, now=T0 + 10**6).state == paused  # no timeout
    assert tick(paused, 60, PASS).state.phase == "Paused"
    assert tick(paused, 60, FAIL).state.failed_checks == 1
    t = decide(paused, SPEC, now=T0 + 100, command="resume")
    assert (t.state.phase, t.state.pause_reason, t.state.canary_weight, t.state.current_step) == ("Progressing", None, 20, 0)
    assert t.state.step_started_at == state.step_started_at  # the step's analysis goes on
    assert non_events(t) == []


def test_manual_pause_of_a_step_pause_then_resume_goes_past_it():
    spec = replace(SPEC, steps=(Step(10), Pause(120), Step(30)))
    paused = tick(progressing(spec), 60, PASS, spec=spec).state
    manual = decide(paused, spec, now=paused.step_started_at + 10, command="pause").state
    assert manual.pause_reason == "Manual"
    assert decide(manual, spec, now=paused.step_started_at + 500).state == manual  # the duration no longer ends it
    assert decide(manual, spec, now=paused.step_started_at + 500, command="resume").state.canary_weight == 30


def test_pause_before_the_canary_is_ready():
    paused = decide(start("v1", "v2", T0), SPEC, now=T0, command="pause").state
    assert (paused.phase, paused.pause_reason) == ("Paused", "Manual")
    assert decide(paused, SPEC, now=T0 + 5, canary_ready=True).state == paused
    resumed = decide(paused, SPEC, now=T0 + 5, command="resume").state
    assert (resumed.phase, resumed.pause_reason) == ("Initializing", None)
    assert decide(resumed, SPEC, now=T0 + 6, canary_ready=True).state.phase == "Progressing"


# Commands


@pytest.mark.parametrize("phase", ["Initializing", "Progressing", "Paused"])
def test_promote_skips_the_remaining_steps(phase):
    state = start("v1", "v2", T0) if phase == "Initializing" else progressing()
    if phase == "Paused":
        state = decide(state, SPEC, now=T0 + 1, command="pause").state
    t = decide(state, SPEC, now=T0 + 2, command="promote")
    assert t.state.phase == "Promoting" and t.state.pause_reason is None
    assert non_events(t) == [Promote()]
    assert events(t) == [("Normal", "RolloutPromoting")]
    assert "promoted by command" in t.state.message


@pytest.mark.parametrize("phase", ["Initializing", "Progressing", "Paused"])
def test_abort_rolls_back(phase):
    state = start("v1", "v2", T0) if phase == "Initializing" else progressing()
    if phase == "Paused":
        state = decide(state, SPEC, now=T0 + 1, command="pause").state
    t = decide(state, SPEC, now=T0 + 2, command="abort")
    assert (t.state.phase, t.state.canary_weight, t.state.pause_reason) == ("Failed", 0, None)
    assert non_events(t) == [Rollback()]
    assert events(t) == [("Warning", "RolloutAborted")]
    assert t.state.message.startswith("Aborted: ") and t.state.finished_at == T0 + 2


def test_abort_while_promoting_is_ignored():
    promoting = decide(progressing(), SPEC, now=T0 + 1, command="promote").state
    t = decide(promoting, SPEC, now=T0 + 2, command="abort")
    assert t.state == promoting
    assert events(t) == [("Normal", "RolloutCommandIgnored")]


def test_an_ignored_command_does_not_stop_the_tick():
    state = progressing()
    t = decide(state, SPEC, now=T0 + 60, results=PASS, command="resume")  # not paused
    assert events(t)[0] == ("Normal", "RolloutCommandIgnored")
    assert t.state.canary_weight == 40
    promoting = decide(state, SPEC, now=T0 + 1, command="promote").state
    t = decide(promoting, SPEC, now=T0 + 2, command="pause", stable_ready=True)
    assert t.state.phase == "Succeeded"
    assert events(t) == [("Normal", "RolloutCommandIgnored"), ("Normal", "RolloutSucceeded")]


@pytest.mark.parametrize("command", COMMANDS)
def test_commands_after_the_end_are_ignored(command):
    for final in (replace(progressing(), phase="Succeeded", canary_weight=0), replace(progressing(), phase="Failed", canary_weight=0)):
        t = decide(final, SPEC, now=T0 + 5, command=command)
        assert t.state == final and events(t) == [("Normal", "RolloutCommandIgnored")]


def test_pause_twice_is_ignored():
    paused = decide(progressing(), SPEC, now=T0 + 1, command="pause").state
    t = decide(paused, SPEC, now=T0 + 2, command="pause")
    assert t.state == paused and events(t) == [("Normal", "RolloutCommandIgnored")]


def test_parse_command():
    assert [parse_command(c) for c in ("promote", " Pause ", "RESUME", "abort")] == ["promote", "pause", "resume", "abort"]
    assert parse_command(None) is None and parse_command("") is None and parse_command("rollback") is None


# A newer model


def test_a_newer_model_restarts_the_rollout():
    state = tick(tick(progressing(), 60, FAIL).state, 60, PASS).state
    assert (state.canary_weight, state.failed_checks) == (40, 1)
    t = decide(state, SPEC, now=T0 + 500, results=FAIL, desired_version="v3", canary_ready=True)
    assert (t.state.phase, t.state.stable_version, t.state.canary_version) == ("Initializing", "v1", "v3")
    assert (t.state.canary_weight, t.state.failed_checks, t.state.current_step, t.state.last_analysis) == (0, 0, 0, ())
    assert non_events(t) == [SetWeight(0)]
    assert events(t) == [("Normal", "RolloutRestarted")]
    assert "v3 supersedes the canary v2" in t.state.message


def test_the_same_version_is_no_restart():
    state = progressing()
    assert decide(state, SPEC, now=T0 + 1, desired_version="v2") == Transition(state, ())


def test_a_newer_model_while_paused_restarts_too():
    paused = decide(progressing(), SPEC, now=T0 + 1, command="pause").state
    t = decide(paused, SPEC, now=T0 + 2, desired_version="v3")
    assert (t.state.phase, t.state.pause_reason, t.state.canary_version) == ("Initializing", None, "v3")


def test_a_newer_model_while_promoting_is_compared_with_the_promoted_one():
    promoting = decide(progressing(), SPEC, now=T0 + 1, command="promote").state
    t = decide(promoting, SPEC, now=T0 + 2, desired_version="v3")
    assert (t.state.phase, t.state.stable_version, t.state.canary_version) == ("Initializing", "v2", "v3")
    assert t.state.stable_track_version == "v2"


def test_back_to_the_stable_version_cancels_the_canary():
    t = decide(progressing(), SPEC, now=T0 + 5, desired_version="v1")
    assert (t.state.phase, t.state.stable_version, t.state.canary_version, t.state.canary_weight) == ("Succeeded", "v1", "v1", 0)
    assert non_events(t) == [Rollback()]
    assert events(t) == [("Normal", "RolloutCancelled")]
    assert t.state.stable_track_version == "v1" and not t.state.canary_active


def test_a_new_model_after_the_end_starts_a_new_rollout():
    succeeded = replace(progressing(), phase="Succeeded", canary_weight=0)
    t = decide(succeeded, SPEC, now=T0 + 9, desired_version="v3")
    assert (t.state.phase, t.state.stable_version, t.state.canary_version) == ("Initializing", "v2", "v3")
    assert non_events(t) == [] and events(t) == [("Normal", "RolloutStarted")]

    failed = replace(progressing(), phase="Failed", canary_weight=0, failed_checks=3)
    t = decide(failed, SPEC, now=T0 + 9, desired_version="v3")
    assert (t.state.phase, t.state.stable_version, t.state.canary_version, t.state.failed_checks) == ("Initializing", "v1", "v3", 0)


def test_reverting_after_a_failure_settles_without_actions():
    failed = replace(progressing(), phase="Failed", canary_weight=0, finished_at=T0 + 5)
    t = decide(failed, SPEC, now=T0 + 9, desired_version="v1")
    assert (t.state.phase, t.state.canary_version, t.actions) == ("Succeeded", "v1", ())
    assert t.state.finished_at == T0 + 5  # the failed canary's drain goes on
    assert decide(t.state, SPEC, now=T0 + 10, desired_version="v1") == Transition(t.state, ())


# The canary's pods


def test_canary_pods_are_wanted_while_active_and_while_draining():
    spec = replace(SPEC, drain_seconds=90)
    assert canary_pods_wanted(start("v1", "v2", T0), spec, T0)
    assert canary_pods_wanted(progressing(), spec, T0 + 10**6)
    promoting = decide(progressing(), spec, now=T0 + 1, command="promote").state
    assert canary_pods_wanted(promoting, spec, T0 + 10**6)
    for final in (decide(progressing(), spec, now=T0 + 10, command="abort").state, decide(promoting, spec, now=T0 + 10, stable_ready=True).state):
        assert final.finished_at == T0 + 10
        assert canary_pods_wanted(final, spec, T0 + 99)
        assert not canary_pods_wanted(final, spec, T0 + 100)
        assert not canary_pods_wanted(final, replace(spec, drain_seconds=0), T0 + 10)
    assert not canary_pods_wanted(replace(progressing(), phase="Failed"), spec, T0)  # no end time: none


# The state in the Bot's status


def test_current_state():
    assert current_state(None, None, "v1", T0) is None  # the Bot's first model: no canary
    assert current_state(None, "v1", "v1", T0) is None
    assert current_state({}, "v1", "v2", T0) == start("v1", "v2", T0)
    state = progressing()
    assert current_state(state.to_status(), "v1", "v3", T0 + 5) == state  # decide() sees v3


def test_to_status():
    state = tick(progressing(), 60, BOTH).state
    assert state.to_status() == {
        "phase": "Progressing",
        "stableVersion": "v1",
        "canaryVersion": "v2",
        "canaryWeight": 20,
        "currentStep": 0,
        "failedChecks": 1,
        "inconclusiveChecks": 0,
        "message": state.message,
        "stepStartedAt": T0,
        "lastAnalysisAt": T0 + 60,
        "lastAnalysis": {
            "fallback_rate": {"status": "fail", "value": 0.5, "stableValue": 0.1, "reason": BOTH[0].reason},
            "p95_turn_latency": {"status": "unknown", "reason": "p95_turn_latency: query failed"},
        },
    }
    json.dumps(state.to_status(), allow_nan=False)


def test_status_round_trip_through_every_phase():
    spec = replace(SPEC, steps=(Step(10), Pause(None), Step(30)))
    seen = [start("v1", "v2", T0)]
    seen.append(decide(seen[-1], spec, now=T0, canary_ready=True).state)
    seen.append(tick(seen[-1], 60, BOTH, spec=spec).state)
    seen.append(tick(seen[-1], 60, PASS, spec=spec).state)  # Paused (Step)
    seen.append(decide(seen[-1], spec, now=T0 + 200, command="pause").state)
    seen.append(decide(seen[-1], spec, now=T0 + 300, command="promote").state)
    seen.append(decide(seen[-1], spec, now=T0 + 400, stable_ready=True).state)
    seen.append(decide(seen[-1], spec, now=T0 + 500, command="abort").state)
    seen.append(decide(progressing(), spec, now=T0 + 1, command="abort").state)
    assert {s.phase for s in seen} == {"Initializing", "Progressing", "Paused", "Promoting", "Succeeded", "Failed"}
    for state in seen:
        status = json.loads(json.dumps(state.to_status(), sort_keys=True))  # as the API server hands it back
        assert RolloutState.from_status(status) == state


def test_unreadable_status_means_none():
    assert RolloutState.from_status(None) is None
    assert RolloutState.from_status({}) is None
    assert RolloutState.from_status({"phase": "Dancing", "canaryVersion": "v2"}) is None
    assert RolloutState.from_status({"phase": "Progressing"}) is None
    assert RolloutState.from_status({"phase": "Progressing", "canaryVersion": "v2", "canaryWeight": "lots"}) is None
    assert RolloutState.from_status({"phase": "Progressing", "canaryVersion": "v2", "stepStartedAt": "yesterday"}) is None
    assert RolloutState.from_status({"phase": "Progressing", "canaryVersion": "v2", "stableModel": {"url": "s3://m"}}) is not None
    minimal = RolloutState.from_status({"phase": "Progressing", "canaryVersion": "v2"})
    assert minimal == RolloutState(phase="Progressing", stable_version="", canary_version="v2")
