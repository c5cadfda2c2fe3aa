"""The circuit breaker and the retry budget, driven by a fake clock."""

import threading

import pytest

from botfleet_rasa.circuit import CircuitBreaker, CircuitState, RetryBudget


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock():
    return FakeClock()


def breaker(clock, threshold=3, reset=30.0):
    transitions = []
    circuit = CircuitBreaker(threshold, reset, clock=clock, on_transition=lambda old, new: transitions.append((old, new)))
    return circuit, transitions


def test_opens_after_the_threshold_of_consecutive_failures(clock):
    circuit, transitions = breaker(clock, threshold=3)
    for _ in range(2):
        assert circuit.allow()
        circuit.record_failure()
    assert circuit.state is CircuitState.CLOSED and transitions == []
    assert circuit.allow()
    circuit.record_failure()
    assert circuit.state is CircuitState.OPEN
    assert transitions == [(CircuitState.CLOSED, CircuitState.OPEN)]
    assert not circuit.allow()


def test_a_success_resets_the_failure_count(clock):
    circuit, _ = breaker(clock, threshold=3)
    circuit.record_failure()
    circuit.record_failure()
    circuit.record_success()
    assert circuit.consecutive_failures == 0
    circuit.record_failure()
    circuit.record_failure()
    assert circuit.state is CircuitState.CLOSED


def test_stays_open_until_the_reset_time_then_lets_one_probe_through(clock):
    circuit, transitions = breaker(clock, threshold=1, reset=30)
    circuit.record_failure()
    clock.advance(29.9)
    assert not circuit.allow()
    assert circuit.state is CircuitState.OPEN
    clock.advance(0.1)
    assert circuit.allow()  # the probe
    assert circuit.state is CircuitState.HALF_OPEN
    assert not circuit.allow()  # only one probe at a time
    assert not circuit.allow()
    circuit.record_success()
    assert circuit.state is CircuitState.CLOSED
    assert circuit.allow() and circuit.allow()
    assert transitions == [
        (CircuitState.CLOSED, CircuitState.OPEN),
        (CircuitState.OPEN, CircuitState.HALF_OPEN),
        (CircuitState.HALF_OPEN, CircuitState.CLOSED),
    ]


def test_a_failed_probe_reopens_for_a_full_reset_period(clock):
    circuit, transitions = breaker(clock, threshold=2, reset=10)
    circuit.record_failure()
    circuit.record_failure()
    clock.advance(10)
    assert circuit.allow()
    circuit.record_failure()  # one failure is enough in half-open
    assert circuit.state is CircuitState.OPEN
    clock.advance(9)
    assert not circuit.allow()
    clock.advance(1)
    assert circuit.allow()
    assert transitions[-2:] == [(CircuitState.HALF_OPEN, CircuitState.OPEN), (CircuitState.OPEN, CircuitState.HALF_OPEN)]


def test_a_late_failure_while_open_does_not_extend_the_open_period(clock):
    circuit, _ = breaker(clock, threshold=1, reset=10)
    circuit.record_failure()
    clock.advance(5)
    circuit.record_failure()  # a call that started before the circuit opened
    clock.advance(5)
    assert circuit.allow()


def test_a_probe_that_never_reports_does_not_wedge_the_breaker(clock):
    circuit, _ = breaker(clock, threshold=1, reset=10)
    circuit.record_failure()
    clock.advance(10)
    assert circuit.allow()  # probe taken, result never reported
    clock.advance(9)
    assert not circuit.allow()
    clock.advance(1)
    assert circuit.allow()


def test_only_one_of_many_threads_gets_the_probe(clock):
    circuit, _ = breaker(clock, threshold=1, reset=1)
    circuit.record_failure()
    clock.advance(1)
    start = threading.Barrier(16)
    allowed = []

    def ask():
        start.wait()
        allowed.append(circuit.allow())

    threads = [threading.Thread(target=ask) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(allowed) == [False] * 15 + [True]


def test_concurrent_failures_open_exactly_once(clock):
    circuit, transitions = breaker(clock, threshold=50, reset=30)
    threads = [threading.Thread(target=lambda: [circuit.record_failure() for _ in range(25)]) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert circuit.consecutive_failures == 200
    assert transitions == [(CircuitState.CLOSED, CircuitState.OPEN)]


def test_invalid_settings_are_rejected(clock):
    with pytest.raises(ValueError):
        CircuitBreaker(0, 30, clock=clock)
    with pytest.raises(ValueError):
        CircuitBreaker(1, -1, clock=clock)
    with pytest.raises(ValueError):
        RetryBudget(0.3, -1, 0.4, clock=clock)
    with pytest.raises(ValueError):
        RetryBudget(0.3, 1, 0, clock=clock)


def test_budget_allows_one_plus_retries_attempts(clock):
    budget = RetryBudget(0.3, 2, 10.0, clock=clock)
    assert [budget.next_timeout() for _ in range(4)] == [0.3, 0.3, 0.3, None]


def test_budget_shortens_the_last_attempt_to_the_time_left(clock):
    budget = RetryBudget(0.3, 1, 0.4, clock=clock)
    assert budget.next_timeout() == 0.3
    clock.advance(0.3)  # the first attempt timed out
    assert budget.next_timeout() == pytest.approx(0.1)
    assert budget.next_timeout() is None


def test_budget_makes_no_attempt_too_short_to_succeed(clock):
    budget = RetryBudget(0.3, 3, 0.31, clock=clock, min_attempt_seconds=0.02)
    assert budget.next_timeout() == 0.3
    clock.advance(0.3)
    assert budget.next_timeout() is None  # 10 ms left: not worth a request
    first_only = RetryBudget(0.3, 0, 0.01, clock=clock, min_attempt_seconds=0.02)
    assert first_only.next_timeout() == pytest.approx(0.01)  # the first attempt always gets what there is


def test_budget_counts_from_its_creation(clock):
    budget = RetryBudget(0.3, 5, 0.4, clock=clock)
    clock.advance(0.5)
    assert budget.next_timeout() is None
