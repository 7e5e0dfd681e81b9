"""Trial calls for workers whose health checks pass but whose calls failed.

Such a worker (calls time out or fail while ``/health`` answers 200) is ejected by its breaker,
and checks cannot re-admit it: only a call that succeeds can. A request may be that trial only
when nothing else of the tier is left, so in a tier with a healthy peer the worker would wait
for one forever; and a request that is the trial of a worker whose calls hang waits out its
whole timeout. So the pool makes the trials itself, on the breaker's schedule: when a
worker's backoff is over, one small call (one token, ``trial_timeout_s``) is its trial. It
passes: the worker is back, within ``open_max_s`` of recovering. It fails: the backoff
doubles, up to ``open_max_s``. A worker that was *down* (its checks failed) is left to its
checks, which re-admit it as soon as one passes.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable
from typing import Any

from core.errors import TtcError
from workers.breaker import BreakerState
from workers.client import WorkerClient, attempt_timeout
from workers.worker import Worker, attempt

log = logging.getLogger("ttc.workers")

# One token of "ok": the cheapest call that proves the worker generates again.
TRIAL_BODY: dict[str, Any] = {
    "messages": [{"role": "user", "content": "Say ok."}],
    "max_tokens": 1,
    "temperature": 0,
}


def due(worker: Worker) -> bool:
    """Is ``worker`` ejected for its calls (not down) with its backoff over?"""
    breaker = worker.breaker
    return breaker.state is BreakerState.OPEN and not breaker.down and breaker.admits()


class Trials:
    """Runs at most one trial per worker at a time, each in its own task."""

    def __init__(
        self,
        timeout_s: float,
        failures: dict[str, int],
        clock: Callable[[], float],
    ) -> None:
        self._timeout_s = timeout_s
        self._failures = failures
        self._clock = clock
        self._running: dict[Worker, asyncio.Task[None]] = {}

    def start_due(
        self,
        workers: list[Worker],
        client: Callable[[Worker], WorkerClient],
        model: Callable[[Worker], str],
    ) -> None:
        """Start a trial for each of ``workers`` that is ``due`` and has none running."""
        for worker in workers:
            if due(worker) and worker not in self._running:
                body = {**TRIAL_BODY, "model": model(worker)}
                task = asyncio.create_task(self._trial(worker, client(worker), body))
                self._running[worker] = task
                task.add_done_callback(functools.partial(self._done, worker))

    def _done(self, worker: Worker, _: asyncio.Task[None]) -> None:
        self._running.pop(worker, None)

    async def _trial(self, worker: Worker, client: WorkerClient, body: dict[str, Any]) -> None:
        worker.breaker.acquire()  # the one trial of the half-open breaker
        # A timeout is the client's WorkerFailed: ``attempt`` counts it, the backoff doubles.
        timeout = attempt_timeout(self._timeout_s, self._timeout_s)
        try:
            with attempt(worker, self._failures, self._clock):
                await client.chat(body, timeout)
        except TtcError as exc:
            log.info(
                "trial call to worker %s of tier %s failed: %s",
                worker.url,
                worker.tier,
                exc.message,
            )

    async def close(self) -> None:
        for task in list(self._running.values()):
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*self._running.values(), return_exceptions=True)
