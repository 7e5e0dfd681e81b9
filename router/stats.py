"""``StatsSource``: windowed request statistics shared by gateway replicas, and a local one.

The router records every finished request (``record``: no I/O, so it never delays a response)
and the budget controller reads windowed totals back (``totals``). Backed by Redis
(``state.stats``), every replica sees everyone's traffic, so all replicas steer towards the
same fleet-wide target; ``LocalStats`` here serves a single replica and the tests.
Implementations must not raise into the request path: a degraded store answers with what it
has (possibly an empty window).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

from core.request import Decision
from core.result import PolicyResult

Metric = Literal["samples", "tokens"]


@dataclass(frozen=True)
class WindowTotals:
    requests: int = 0
    samples: float = 0.0
    tokens: float = 0.0  # prompt + completion, every kind (samples, probes, judges)

    def mean(self, metric: Metric) -> float | None:
        if not self.requests:
            return None
        return (self.samples if metric == "samples" else self.tokens) / self.requests


class StatsSource(Protocol):
    def record(self, decision: Decision, result: PolicyResult) -> None:
        """Count one finished request; no I/O (a shared store flushes in the background)."""
        ...

    async def totals(self, seconds: float) -> WindowTotals:
        """Requests, samples and tokens of the requests finished in the last ``seconds``."""
        ...


def samples_of(result: PolicyResult) -> int:
    return int(result.report.get("samples") or len(result.choices) or 1)


# Bound on remembered requests: memory stays bounded whatever the traffic; at 100 requests/s
# it still covers a 5-minute window.
_MAX_OBSERVATIONS = 30_000


class LocalStats:
    """In-process ``StatsSource``: a bounded deque of (time, samples, tokens)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._seen: deque[tuple[float, int, int]] = deque(maxlen=_MAX_OBSERVATIONS)

    def record(self, decision: Decision, result: PolicyResult) -> None:
        self.add(samples_of(result), result.usage.total.total_tokens)

    def add(self, samples: int, tokens: int) -> None:
        self._seen.append((self._clock(), samples, tokens))

    async def totals(self, seconds: float) -> WindowTotals:
        since = self._clock() - seconds
        while self._seen and self._seen[0][0] < since:
            self._seen.popleft()
        return WindowTotals(
            len(self._seen), sum(s for _, s, _ in self._seen), sum(t for _, _, t in self._seen)
        )
