"""The circuit breaker's state machine: eject, back off, admit one trial, re-admit."""

from __future__ import annotations

import pytest

from workers.breaker import BreakerState, CircuitBreaker
from workers.config import BreakerConfig


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def breaker(
    clock: Clock, threshold: int = 3, base: float = 1.0, cap: float = 8.0
) -> CircuitBreaker:
    config = BreakerConfig(failure_threshold=threshold, open_base_s=base, open_max_s=cap)
    return CircuitBreaker(config, clock)


def test_opens_only_after_consecutive_failures(clock: Clock) -> None:
    b = breaker(clock)
    assert not b.failure() and not b.failure()
    b.success()  # a success in between: the count starts over
    assert not b.failure() and not b.failure()
    assert (b.state, b.admits()) == (BreakerState.CLOSED, True)
    assert b.failure()  # the third in a row ejects
    assert b.state is BreakerState.OPEN and b.ejections == 1
    assert not b.admits()


def test_open_admits_exactly_one_trial_after_the_backoff(clock: Clock) -> None:
    b = breaker(clock, threshold=1)
    b.failure()
    clock.now += 0.99
    assert not b.admits()
    assert b.retry_in == pytest.approx(0.01)
    clock.now += 0.01
    assert b.admits()
    b.acquire()
    assert b.state is BreakerState.HALF_OPEN
    assert not b.admits()  # a second request must wait for the trial's verdict


def test_trial_success_closes(clock: Clock) -> None:
    b = breaker(clock, threshold=1)
    b.failure()
    clock.now += 1.0
    b.acquire()
    b.success()
    assert b.state is BreakerState.CLOSED and b.admits()


def test_trial_failure_reopens_with_doubled_backoff_up_to_the_cap(clock: Clock) -> None:
    b = breaker(clock, threshold=1, base=1.0, cap=8.0)
    b.failure()
    backoffs = []
    for _ in range(5):
        backoffs.append(b.retry_in)
        clock.now += b.retry_in
        b.acquire()
        b.failure()
    assert backoffs == [1.0, 2.0, 4.0, 8.0, 8.0]
    assert b.ejections == 1  # one ejection, several failed trials


def test_failures_of_calls_already_in_flight_do_not_lengthen_the_backoff(clock: Clock) -> None:
    b = breaker(clock, threshold=1)
    b.failure()
    for _ in range(7):  # the burst that was in flight when the worker died
        clock.now += 0.1
        b.failure()
    assert b.retry_in == pytest.approx(0.3)


def test_failed_health_check_after_the_backoff_reopens_longer(clock: Clock) -> None:
    b = breaker(clock, threshold=1)
    b.failure()
    clock.now += 1.0
    b.failure(from_check=True)  # the check failed
    assert b.state is BreakerState.OPEN and b.retry_in == 2.0 and b.down


def test_a_passing_check_readmits_a_worker_that_was_down_at_once(clock: Clock) -> None:
    """However long its backoff: a worker that comes back serves within one interval."""
    b = breaker(clock, threshold=1, base=8.0)
    b.failure(from_check=True)
    assert b.retry_in == 8.0 and b.next_try_in(check_in=0.4) == 0.4
    assert b.check_passed()  # re-admitted, 8 s early
    assert b.state is BreakerState.CLOSED and not b.down


def test_a_passing_check_does_not_readmit_a_worker_whose_calls_fail(clock: Clock) -> None:
    """Its checks pass, its calls fail (500s, garbage): only a trial after the backoff
    re-admits it, so the next hint is the backoff, not the next check."""
    b = breaker(clock, threshold=1)
    b.failure()
    assert not b.check_passed() and b.state is BreakerState.OPEN
    assert b.next_try_in(check_in=0.2) == 1.0


def test_passing_health_check_readmits_but_keeps_the_backoff_level(clock: Clock) -> None:
    """A worker that passes /health but fails real calls flaps ever more slowly."""
    b = breaker(clock, threshold=1)
    b.failure(from_check=True)
    clock.now += 1.0
    assert b.check_passed()
    assert b.state is BreakerState.CLOSED
    b.failure()
    assert b.retry_in == 2.0
    clock.now += 2.0
    b.acquire()
    assert b.success()  # a real call succeeded: the next ejection starts from the base again
    b.failure()
    assert b.retry_in == 1.0


def test_cancelled_trial_lets_the_next_request_try_at_once(clock: Clock) -> None:
    b = breaker(clock, threshold=1)
    b.failure()
    clock.now += 1.0
    b.acquire()
    b.release()
    assert b.state is BreakerState.OPEN and b.admits()


def test_release_and_acquire_do_nothing_while_closed(clock: Clock) -> None:
    b = breaker(clock)
    b.acquire()
    b.release()
    assert b.state is BreakerState.CLOSED and b.retry_in == 0.0
