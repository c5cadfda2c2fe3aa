"""The periodic full reconcile of every Bot, on an asyncio task of its own.

kopf's timers and daemons would do this, but kopf puts a finalizer on every object
that has one (kopf/on.py: requires_finalizer=True), and Bots carry no finalizer on
purpose: deleting a Bot must never wait for the operator. So the operator runs its own
loop, started from an on.startup handler, over kopf's index of Bots.

Every Bot is reconciled once per interval (BOTFLEET_RESYNC_SECONDS, 60 by default):
a Degraded Bot recovers, and drift that no watch event reported is repaired, within
one interval. A Bot whose problem a retry may fix (a missing Secret, a failed write)
comes back sooner, after BOTFLEET_RETRY_BASE_SECONDS doubling up to the interval;
one whose problem it cannot (an invalid spec, an API the server lacks) waits for the
next interval, so nothing loops. The steady state costs no writes: a reconcile of a
Bot in sync finds its children in sync from memory and its status unchanged.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Awaitable, Callable, Hashable

logger = logging.getLogger(__name__)

Key = Hashable
# The result of one attempt: "ok", "retry" (a problem worth retrying), "busy"
# (another reconcile of the Bot was running: try again shortly), or "rollout" (a canary
# rollout is under way: its analysis and steps need a reconcile every rollout tick).
Result = str


class Schedule:
    """When each Bot is next due. Pure bookkeeping over a clock, tested on its own."""

    def __init__(self, interval: float, retry_base: float, clock: Callable[[], float] = time.monotonic,
                 rollout_tick: float = 10.0) -> None:
        self.interval = max(1.0, interval)
        self.retry_base = max(0.1, min(retry_base, self.interval))
        self.rollout_tick = max(0.1, min(rollout_tick, self.interval))
        self.clock = clock
        self._due: dict[Key, float] = {}
        self._failures: dict[Key, int] = {}

    def is_due(self, key: Key) -> bool:
        now = self.clock()
        if key not in self._due:  # first seen: its own handler reconciled it just now
            self._due[key] = now + self.interval
            return False
        return self._due[key] <= now

    def done(self, key: Key, result: Result) -> None:
        now = self.clock()
        if result == "retry":
            failures = self._failures.get(key, 0)
            self._failures[key] = failures + 1
            self._due[key] = now + min(self.interval, self.retry_base * 2 ** min(failures, 16))
        elif result == "busy":
            self._due[key] = now + min(self.interval, self.retry_base)
        elif result == "rollout":
            self._failures.pop(key, None)
            self._due[key] = now + self.rollout_tick
        else:
            self._failures.pop(key, None)
            self._due[key] = now + self.interval

    def postpone(self, key: Key) -> None:
        """Not now (another peer is active): look again in one interval."""
        self._due[key] = self.clock() + self.interval

    def forget(self, key: Key) -> None:
        self._due.pop(key, None)
        self._failures.pop(key, None)

    def clear(self) -> None:
        self._due.clear()
        self._failures.clear()

    def due_at(self, key: Key) -> float | None:
        return self._due.get(key)


async def run(
    schedule: Schedule,
    bots: Callable[[], list[Key]],
    reconcile_one: Callable[[Key], Result],
    active: Callable[[], Awaitable[bool]],
    tick: float = 1.0,
) -> None:
    """Forever: every tick, reconcile the Bots that are due, one at a time, off the
    event loop (kopf's watches and handlers share it). `reconcile_one` is given the
    Bot's key and reads the Bot itself, at the time it runs: a body taken earlier may
    be older than a spec change a handler has applied meanwhile."""
    while True:
        await asyncio.sleep(tick)
        try:
            due = [key for key in bots() if schedule.is_due(key)]
            if not due:
                continue
            if not await active():
                for key in due:
                    schedule.postpone(key)
                continue
            for key in due:
                try:
                    result = await asyncio.to_thread(reconcile_one, key)
                except Exception:  # one Bot's failure must not stop the others' resyncs
                    logger.exception("resync of %s failed", key)
                    result = "retry"
                schedule.done(key, result)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("resync round failed")
