"""The weight schedule: stepWeight up to maxWeight, or the explicit steps."""

import pytest

from botfleet_operator.rollout.spec import CanarySpec, Pause, SetWeight
from botfleet_operator.rollout.weights import describe, next_weight, plan


@pytest.mark.parametrize(
    "current, step, cap, expected",
    [
        (0, 10, 50, 10),
        (40, 10, 50, 50),
        (45, 10, 50, 50),  # capped
        (50, 10, 50, 50),  # at the cap it stays
        (0, 60, 50, 50),
        (90, 20, 100, 100),
        (0, 0, 50, 1),  # a step below 1 counts as 1: the plan ends
        (0, 10, 150, 10),
        (95, 10, 150, 100),  # never above 100
        (60, 10, 50, 50),  # above the cap (maxWeight lowered): back to it
    ],
)
def test_next_weight(current, step, cap, expected):
    assert next_weight(current, step, cap) == expected


def test_default_plan_steps_up_to_the_max():
    assert plan(CanarySpec()) == tuple(SetWeight(w) for w in (10, 20, 30, 40, 50))


def test_plan_ends_at_the_max_even_off_the_step():
    assert plan(CanarySpec(step_weight=20, max_weight=50)) == (SetWeight(20), SetWeight(40), SetWeight(50))
    assert plan(CanarySpec(step_weight=30, max_weight=30)) == (SetWeight(30),)
    assert plan(CanarySpec(step_weight=1, max_weight=3)) == (SetWeight(1), SetWeight(2), SetWeight(3))
    assert plan(CanarySpec(step_weight=25, max_weight=100))[-1] == SetWeight(100)


def test_explicit_steps_win():
    steps = (SetWeight(5), Pause(60), SetWeight(25), Pause(None))
    assert plan(CanarySpec(step_weight=10, max_weight=50, steps=steps)) == steps


def test_describe():
    assert describe(SetWeight(20)) == "canary weight 20%"
    assert describe(Pause(30)) == "pause 30s"
    assert describe(Pause(None)) == "pause until resumed"
