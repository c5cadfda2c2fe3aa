"""A circuit breaker and a retry budget for calls to a remote dependency.

Both are pure: time comes from an injectable clock (monotonic seconds), so the tests
drive them without sleeping and without a network.
"""

from __future__ import annotations

import enum
import threading
import time
from typing import Callable, List, Optional, Tuple

Clock = Callable[[], float]


class CircuitState(enum.IntEnum):
    # The values are the ones the botfleet_model_serving_circuit_state gauge exports.
    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


TransitionListener = Callable[[CircuitState, CircuitState], None]


class CircuitBreaker:
    """closed -> open after `failure_threshold` consecutive failures; open -> half-open
    once `reset_seconds` have passed, letting exactly one probe call through;
    half-open -> closed when the probe succeeds, back to open when it fails.

    Callers ask `allow()` before a call and report its result with `record_success()`
    or `record_failure()`. Thread-safe: one breaker is shared by every thread of a
    process. A probe whose result is never reported (a caller bug) does not wedge the
    breaker: after another `reset_seconds` a new probe is let through.
    """

    def __init__(
        self,
        failure_threshold: int,
        reset_seconds: float,
        clock: Clock = time.monotonic,
        on_transition: Optional[TransitionListener] = None,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be at least 1")
        if reset_seconds < 0:
            raise ValueError("reset_seconds must not be negative")
        self.failure_threshold = failure_threshold
        self.reset_seconds = reset_seconds
        self._clock = clock
        self._on_transition = on_transition
        self._lock = threading.Lock()
        self._state = CircuitState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._probe_started_at: Optional[float] = None

    @property
    def state(self) -> CircuitState:
        with self._lock:
            return self._state

    @property
    def consecutive_failures(self) -> int:
        with self._lock:
            return self._failures

    def allow(self) -> bool:
        """Whether a call may be made now. In half-open, True for the one probe only."""
        transitions: List[Tuple[CircuitState, CircuitState]] = []
        with self._lock:
            now = self._clock()
            if self._state is CircuitState.CLOSED:
                allowed = True
            elif self._state is CircuitState.OPEN:
                allowed = now - self._opened_at >= self.reset_seconds
                if allowed:
                    self._move(CircuitState.HALF_OPEN, transitions)
                    self._probe_started_at = now
            else:
                stuck = self._probe_started_at is None or now - self._probe_started_at >= self.reset_seconds
                allowed = stuck
                if allowed:
                    self._probe_started_at = now
        self._notify(transitions)
        return allowed

    def record_success(self) -> None:
        transitions: List[Tuple[CircuitState, CircuitState]] = []
        with self._lock:
            self._failures = 0
            self._probe_started_at = None
            if self._state is not CircuitState.CLOSED:
                self._move(CircuitState.CLOSED, transitions)
        self._notify(transitions)

    def record_failure(self) -> None:
        transitions: List[Tuple[CircuitState, CircuitState]] = []
        with self._lock:
            self._failures += 1
            if self._state is CircuitState.HALF_OPEN or (
                self._state is CircuitState.CLOSED and self._failures >= self.failure_threshold
            ):
                self._opened_at = self._clock()
                self._probe_started_at = None
                self._move(CircuitState.OPEN, transitions)
            # Already open: a call that started before the circuit opened failed late.
            # Keep the original opening time so the reset period is not extended.
        self._notify(transitions)

    def _move(self, new: CircuitState, transitions: List[Tuple[CircuitState, CircuitState]]) -> None:
        transitions.append((self._state, new))
        self._state = new

    def _notify(self, transitions: List[Tuple[CircuitState, CircuitState]]) -> None:
        # Outside the lock: a listener (logging, metrics) may read the breaker's state.
        if self._on_transition:
            for old, new in transitions:
                self._on_transition(old, new)


class RetryBudget:
    """The attempts of one logical call: the first attempt plus up to `retries` more,
    all within `budget_seconds` of the budget's creation. Each attempt's timeout is the
    smaller of `attempt_timeout` and the time left, so the caller never waits longer
    than the budget in total. A retry that would get less than `min_attempt_seconds` is
    not made: it could not succeed and would only add load.
    """

    def __init__(
        self,
        attempt_timeout: float,
        retries: int,
        budget_seconds: float,
        clock: Clock = time.monotonic,
        min_attempt_seconds: float = 0.02,
    ) -> None:
        if attempt_timeout <= 0 or budget_seconds <= 0:
            raise ValueError("attempt_timeout and budget_seconds must be positive")
        if retries < 0:
            raise ValueError("retries must not be negative")
        self._clock = clock
        self._attempt_timeout = attempt_timeout
        self._deadline = clock() + budget_seconds
        self._attempts_left = 1 + retries
        self._min_attempt = min_attempt_seconds
        self._first = True

    def next_timeout(self) -> Optional[float]:
        """The timeout of the next attempt, or None when no attempt is left."""
        if self._attempts_left <= 0:
            return None
        remaining = self._deadline - self._clock()
        # The first attempt gets whatever there is; a retry only if it can succeed.
        if remaining <= 0 or (not self._first and remaining < self._min_attempt):
            return None
        self._first = False
        self._attempts_left -= 1
        return min(self._attempt_timeout, remaining)
