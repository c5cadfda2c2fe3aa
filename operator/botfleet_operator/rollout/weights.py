"""The canary's weight schedule, as Flagger's scheduler steps it: stepWeight more per
passed analysis interval, capped at maxWeight; or the explicit steps of the spec.
Reaching the end of the plan means promote."""

from __future__ import annotations

from botfleet_operator.rollout.spec import CanarySpec, Pause, SetWeight, Step


def next_weight(current: int, step_weight: int, max_weight: int) -> int:
    """The weight after `current`: one step_weight more, never above max_weight (nor
    100, nor below 0). A step_weight below 1 counts as 1, so a plan always ends."""
    cap = max(0, min(max_weight, 100))
    return max(0, min(current + max(step_weight, 1), cap))


def plan(spec: CanarySpec) -> tuple[Step, ...]:
    """The explicit steps if given, else setWeight step_weight, 2*step_weight, ...
    up to max_weight (its last step max_weight itself). Each setWeight is followed by
    one analysis interval that must pass before the next step."""
    if spec.steps:
        return spec.steps
    steps: list[Step] = []
    weight = 0
    while True:
        following = next_weight(weight, spec.step_weight, spec.max_weight)
        if following <= weight:
            return tuple(steps)
        steps.append(SetWeight(following))
        weight = following


def describe(step: Step) -> str:
    if isinstance(step, Pause):
        return "pause until resumed" if step.seconds is None else f"pause {step.seconds}s"
    return f"canary weight {step.weight}%"
