"""The periodic full reconcile: when each Bot is due, and the loop over kopf's index."""

import asyncio

import pytest

from botfleet_operator.resync import Schedule, run


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_every_bot_is_due_once_per_interval():
    clock = Clock()
    schedule = Schedule(interval=60, retry_base=10, clock=clock)
    assert not schedule.is_due("a")  # first seen: its handler just reconciled it
    clock.now = 59.9
    assert not schedule.is_due("a")
    clock.now = 60
    assert schedule.is_due("a")
    schedule.done("a", "ok")
    assert schedule.due_at("a") == 120


def test_a_retryable_problem_comes_back_sooner_with_backoff_capped_at_the_interval():
    clock = Clock()
    schedule = Schedule(interval=60, retry_base=10, clock=clock)
    delays = []
    for _ in range(5):
        schedule.done("a", "retry")
        delays.append(schedule.due_at("a") - clock.now)
    assert delays == [10, 20, 40, 60, 60]
    schedule.done("a", "ok")
    schedule.done("a", "retry")
    assert schedule.due_at("a") - clock.now == 10  # recovered: the backoff starts over


def test_busy_and_paused_bots():
    clock = Clock()
    schedule = Schedule(interval=60, retry_base=5, clock=clock)
    schedule.done("a", "busy")
    assert schedule.due_at("a") == 5
    schedule.postpone("a")
    assert schedule.due_at("a") == 60
    schedule.forget("a")
    assert schedule.due_at("a") is None


@pytest.mark.asyncio
async def test_the_loop_reconciles_due_bots_off_the_event_loop_and_only_when_active():
    clock = Clock()
    schedule = Schedule(interval=10, retry_base=1, clock=clock)
    bots = [("ns", "a"), ("ns", "b")]
    for key in bots:
        schedule.is_due(key)
    done, active = [], [False]

    def reconcile_one(key):
        done.append(key[1])
        if key[1] == "b":
            raise RuntimeError("boom")  # one Bot's failure does not stop the others
        return "ok"

    async def is_active():
        return active[0]

    task = asyncio.create_task(run(schedule, lambda: bots, reconcile_one, is_active, tick=0.01))
    try:
        clock.now = 10
        await asyncio.sleep(0.1)
        assert done == []  # a paused peer does not resync
        assert schedule.due_at(("ns", "a")) == 20
        active[0] = True
        clock.now = 20
        await asyncio.sleep(0.1)
        assert done == ["a", "b"]
        assert schedule.due_at(("ns", "a")) == 30 and schedule.due_at(("ns", "b")) == 21  # b: retried sooner
    finally:
        task.cancel()
