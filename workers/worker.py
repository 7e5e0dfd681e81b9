"""One worker as the pool sees it: breaker, load, counters, the accounting of one call to it,
and how an active health check's verdict is applied (the check itself: ``workers.health``)."""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import enum
import logging
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from core.errors import InvalidRequest, UpstreamError, WorkerFailed
from workers.breaker import BreakerState, CircuitBreaker

T = TypeVar("T")

log = logging.getLogger("ttc.workers")

# Upstream call durations, 50 ms (a short non-streamed answer on a GPU) to 10 minutes.
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)


@dataclass
class LatencyHistogram:
    """A Prometheus-style histogram kept without Prometheus (``server.metrics`` exports it)."""

    buckets: tuple[float, ...] = LATENCY_BUCKETS
    counts: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS) + 1))
    total: float = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, seconds)] += 1
        self.total += seconds

    def cumulative(self) -> list[tuple[str, float]]:
        """(upper bound, count at or below it) pairs, ending with ``+Inf``."""
        out: list[tuple[str, float]] = []
        running = 0
        for bound, count in zip((*map(str, self.buckets), "+Inf"), self.counts, strict=True):
            running += count
            out.append((bound, float(running)))
        return out


@dataclass(eq=False)
class Worker:
    """A worker of one tier. ``healthy`` is None until the first health check."""

    tier: str
    url: str
    breaker: CircuitBreaker
    static: bool = True  # from `endpoints`/`launch`; discovered workers may be removed
    in_flight: int = 0
    requests: int = 0  # calls sent, retries included
    check_ok: bool | None = None  # verdict of the last active health check
    last_check: float = 0.0
    last_progress: float | None = None  # when a call last received bytes from it (clock)
    seen_up: bool = False  # has it ever answered? (a launched worker warming up has not)
    last_error: str = ""  # what its last failure was, for messages and logs
    # Tasks awaiting a call to this worker (``unless_hung``); active checks that eject it
    # cancel them so they retry elsewhere.
    waiting: set[asyncio.Task[Any]] = field(default_factory=set)
    abandoned: set[asyncio.Task[Any]] = field(default_factory=set)
    latency: LatencyHistogram = field(default_factory=LatencyHistogram)

    @property
    def healthy(self) -> bool | None:
        if self.breaker.state is not BreakerState.CLOSED:
            return False
        return self.check_ok

    def abandon_calls(self) -> None:
        """Active checks ejected this worker: every call still waiting on it gives up."""
        for task in self.waiting - self.abandoned:
            self.abandoned.add(task)
            task.cancel()

    @property
    def failures(self) -> int:
        """Consecutive failures while the breaker is closed."""
        return self.breaker.failures

    @property
    def rank(self) -> int:
        """Preference: 0 checked healthy, 1 unchecked or a check failed, 2 only a trial left."""
        if self.breaker.state is not BreakerState.CLOSED:
            return 2
        return 0 if self.check_ok else 1


def blame(worker: Worker, cause: str, *, from_check: bool = False) -> None:
    """Count a failure against ``worker``'s breaker; say so when that ejects it.

    A worker never seen up is starting (a launched vLLM loads its model for a while): that is
    an INFO line, once. Only a worker that was up and went down is a warning.
    """
    worker.last_error = cause
    if not worker.breaker.failure(from_check=from_check):
        return
    if worker.seen_up:
        log.warning("worker %s of tier %s ejected: %s", worker.url, worker.tier, cause)
    else:
        log.info("worker %s of tier %s starting (not answering yet)", worker.url, worker.tier)


def answered(worker: Worker) -> None:
    """A call to ``worker`` succeeded (or got as far as output); a passed trial re-admits it."""
    worker.seen_up = True
    if worker.breaker.success():
        log.info(
            "worker %s of tier %s re-admitted: a trial call succeeded", worker.url, worker.tier
        )


def check_passed(worker: Worker) -> None:
    """A health check passed: the first one says the worker is up; after a failed one it
    re-admits the worker (see ``workers.breaker``)."""
    worker.check_ok = True
    if not worker.seen_up:
        worker.seen_up = True
        worker.breaker.check_passed()
        log.info("worker %s of tier %s is up", worker.url, worker.tier)
    elif worker.breaker.check_passed():
        log.info(
            "worker %s of tier %s re-admitted: its health check passed", worker.url, worker.tier
        )


@contextlib.contextmanager
def attempt(worker: Worker, failures: dict[str, int], clock: Callable[[], float]) -> Iterator[None]:
    """Account one call: in-flight count, breaker verdict, latency; ``failures`` counts failed
    calls per worker URL."""
    worker.in_flight += 1
    started = clock()
    try:
        yield
    except (WorkerFailed, UpstreamError) as exc:
        failures[worker.url] = failures.get(worker.url, 0) + 1
        blame(worker, exc.message)
        raise
    except InvalidRequest:
        answered(worker)  # the worker answered; the request was at fault
        raise
    except BaseException:  # cancelled, or the consumer closed the stream: no verdict
        worker.breaker.release()
        raise
    else:
        answered(worker)
        worker.last_progress = clock()
        worker.latency.observe(worker.last_progress - started)
    finally:
        worker.in_flight -= 1


class Check(enum.Enum):
    """Verdict of one active check."""

    OK = "ok"
    FAILED = "failed"  # refused, reset, an error status, the wrong model: not serving
    TIMED_OUT = "timed_out"  # accepted but too slow: hung, or only saturated


def busy(worker: Worker, now: float, grace_s: float) -> bool:
    """A timed-out check says little about a worker that is serving our calls right now.

    vLLM answers ``/health`` from the same event loop that streams tokens; a saturated worker
    (or a starved CPU) misses the check's deadline while it still makes progress. Such a
    worker is busy, not failed, as long as it has calls in flight and one of them received
    bytes within ``grace_s``. A hung worker makes no progress and is ejected as before, at
    most ``grace_s`` later.
    """
    last = worker.last_progress
    return worker.in_flight > 0 and last is not None and now - last <= grace_s


def judge(worker: Worker, verdict: Check, now: float, grace_s: float) -> None:
    """Apply one active check's verdict; a timed-out check of a ``busy`` worker is excused.
    A worker its checks eject gives up the calls still waiting on it."""
    worker.last_check = now
    if verdict is Check.TIMED_OUT and busy(worker, now, grace_s):
        log.info(
            "worker %s of tier %s is slow to answer checks but serving", worker.url, worker.tier
        )
        return
    if verdict is Check.OK:
        check_passed(worker)
        return
    worker.check_ok = False
    blame(worker, f"health check {verdict.value.replace('_', ' ')}", from_check=True)
    if worker.breaker.state is BreakerState.OPEN:
        worker.abandon_calls()


async def unless_hung(worker: Worker, call: Coroutine[Any, Any, T]) -> T:
    """Await ``call``, unless active checks eject ``worker`` first: then ``WorkerFailed``.

    ``call`` runs in the caller's own task (no task per call on the hot path); an ejection
    cancels that task, and the cancellation is taken back here and turned into
    ``WorkerFailed``, unless someone else (a client that left) cancelled it too.
    """
    task = asyncio.current_task()
    assert task is not None
    worker.waiting.add(task)
    try:
        return await call
    except asyncio.CancelledError:
        if task in worker.abandoned and task.uncancel() == 0:
            raise WorkerFailed(
                "worker stopped answering health checks; call moved elsewhere"
            ) from None
        raise
    finally:
        worker.waiting.discard(task)
        worker.abandoned.discard(task)
