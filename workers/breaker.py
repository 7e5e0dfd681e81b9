"""A circuit breaker per worker: closed, open, half-open, with exponential backoff.

    CLOSED --(failure_threshold consecutive failures)--> OPEN (for the current backoff)
    OPEN --(backoff over; a request is routed here)--> HALF_OPEN (exactly one trial request)
    OPEN / HALF_OPEN --(a successful request: the trial)--> CLOSED
    OPEN / HALF_OPEN --(a passing health check, after a failed one)--> CLOSED
    HALF_OPEN --(the trial fails)--> OPEN (backoff doubled, up to open_max_s)

Two kinds of ejected worker recover differently. One that failed a health check was *down*
(refused, reset, hung, the wrong model): the pool checks every worker every health interval,
and the first passing check re-admits it, so a worker that comes back serves again within one
interval, whatever its backoff. One whose checks pass but whose calls fail (500s, garbage) is
*misbehaving*: checks say nothing about it, so only a trial request after the backoff can
re-admit it, and each failed trial doubles the backoff: it flaps ever more slowly instead of
every health interval. The backoff level falls back to zero only after a *request* succeeds.

Failures reported while OPEN and before the backoff is over are requests that were already in
flight when the worker was ejected; they say nothing new and do not lengthen the backoff.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable

from workers.config import BreakerConfig


class BreakerState(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """State machine only: no I/O; ``clock`` is injectable so tests need no sleeping."""

    def __init__(self, config: BreakerConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self._config = config
        self._clock = clock
        self.state = BreakerState.CLOSED
        self.failures = 0  # consecutive, while closed
        self.ejections = 0
        self.down = False  # a health check failed since the last success: not serving at all
        self._level = 0  # backoff exponent of the next ejection
        self._retry_at = 0.0

    @property
    def retry_in(self) -> float:
        """Seconds until an open breaker lets a trial through (0 when not open)."""
        if self.state is not BreakerState.OPEN:
            return 0.0
        return max(0.0, self._retry_at - self._clock())

    def next_try_in(self, check_in: float | None) -> float:
        """Seconds until a request could be routed here again.

        ``check_in`` is the time to the pool's next health check (None: none scheduled). Now
        when closed or a trial is running (its verdict is imminent); a worker that is down
        comes back at the next passing check or the end of its backoff, whichever is first;
        a misbehaving one only at the end of its backoff.
        """
        if self.state is not BreakerState.OPEN:
            return 0.0
        if self.down and check_in is not None:
            return min(check_in, self.retry_in)
        return self.retry_in

    def admits(self) -> bool:
        """Could a request be routed here now? (no side effect)"""
        if self.state is BreakerState.CLOSED:
            return True
        return self.state is BreakerState.OPEN and self._clock() >= self._retry_at

    def acquire(self) -> None:
        """A request was routed here; an open breaker past its backoff makes it the trial."""
        if self.state is BreakerState.OPEN and self._clock() >= self._retry_at:
            self.state = BreakerState.HALF_OPEN

    def release(self) -> None:
        """The trial ended with no verdict (cancelled): let the next request try at once."""
        if self.state is BreakerState.HALF_OPEN:
            self.state = BreakerState.OPEN
            self._retry_at = self._clock()

    def success(self) -> bool:
        """A request succeeded; True when that re-admitted the worker (the trial passed)."""
        readmitted = self.state is not BreakerState.CLOSED
        self._close()
        self._level = 0
        return readmitted

    def check_passed(self) -> bool:
        """A health check passed; True when that re-admitted a worker that was down.

        The backoff level is kept: a worker that passes checks but fails calls must not have
        its backoff reset by checks.
        """
        if self.state is BreakerState.CLOSED or not self.down:
            self.down = False
            return False
        self._close()
        return True

    def failure(self, *, from_check: bool = False) -> bool:
        """Record a failure (of a call, or of a health check); True when this one ejected the
        worker (closed -> open)."""
        if from_check:
            self.down = True
        if self.state is BreakerState.CLOSED:
            self.failures += 1
            if self.failures < self._config.failure_threshold:
                return False
            self.ejections += 1
            self._open()
            return True
        if self.state is BreakerState.HALF_OPEN or self._clock() >= self._retry_at:
            self._open()
        return False

    def _close(self) -> None:
        self.state = BreakerState.CLOSED
        self.failures = 0
        self.down = False

    def _open(self) -> None:
        backoff = min(self._config.open_base_s * 2**self._level, self._config.open_max_s)
        self._level = min(self._level + 1, 30)  # 30: 2**30 * any base is far past open_max_s
        self.state = BreakerState.OPEN
        self.failures = 0
        self._retry_at = self._clock() + backoff
