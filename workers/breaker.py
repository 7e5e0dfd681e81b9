"""A circuit breaker per worker: closed, open, half-open, with exponential backoff.

    CLOSED --(failure_threshold consecutive failures)--> OPEN (for the current backoff)
    OPEN --(backoff over; a request is routed here)--> HALF_OPEN (exactly one trial request)
    OPEN / HALF_OPEN --(a success: the trial, a passing health check)--> CLOSED
    HALF_OPEN --(the trial fails)--> OPEN (backoff doubled, up to open_max_s)
    OPEN --(a health check after the backoff fails)--> OPEN (backoff doubled)

Failures reported while OPEN and before the backoff is over are requests that were already in
flight when the worker was ejected; they say nothing new and do not lengthen the backoff.
The backoff level falls back to zero only after a *request* succeeds: a worker that passes
``/health`` but fails real requests flaps ever more slowly instead of every second.
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
        self._level = 0  # backoff exponent of the next ejection
        self._retry_at = 0.0

    @property
    def retry_in(self) -> float:
        """Seconds until an open breaker lets a trial through (0 when not open)."""
        if self.state is not BreakerState.OPEN:
            return 0.0
        return max(0.0, self._retry_at - self._clock())

    def admits(self) -> bool:
        """Could a request be routed here now? (no side effect)"""
        if self.state is BreakerState.CLOSED:
            return True
        return self.state is BreakerState.OPEN and self._clock() >= self._retry_at

    def probe_due(self) -> bool:
        """Should an active health check run now? Not while open within its backoff.

        During half-open it should: a trial call stuck on a hung worker is only freed by a
        failing check (see ``WorkerPool``).
        """
        return self.state is not BreakerState.OPEN or self._clock() >= self._retry_at

    def acquire(self) -> None:
        """A request was routed here; an open breaker past its backoff makes it the trial."""
        if self.state is BreakerState.OPEN and self._clock() >= self._retry_at:
            self.state = BreakerState.HALF_OPEN

    def release(self) -> None:
        """The trial ended with no verdict (cancelled): let the next request try at once."""
        if self.state is BreakerState.HALF_OPEN:
            self.state = BreakerState.OPEN
            self._retry_at = self._clock()

    def success(self, *, from_request: bool = True) -> None:
        self.state = BreakerState.CLOSED
        self.failures = 0
        if from_request:
            self._level = 0

    def failure(self) -> bool:
        """Record a failure; True when this one ejected the worker (closed -> open)."""
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

    def _open(self) -> None:
        backoff = min(self._config.open_base_s * 2**self._level, self._config.open_max_s)
        self._level = min(self._level + 1, 30)  # 30: 2**30 * any base is far past open_max_s
        self.state = BreakerState.OPEN
        self.failures = 0
        self._retry_at = self._clock() + backoff
