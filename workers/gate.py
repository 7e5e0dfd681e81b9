"""What may reach an upstream now, beside each worker's circuit breaker.

Three things stop calls that the breaker would let through, none of them a worker's fault:

- a tier whose upstream refused the gateway's credentials (401/403 from a call or a check) is
  *refused*: not ready (``/ready`` says why) until a call or a check of it succeeds again;
- a worker that answered 429 is *cooling* until its ``Retry-After`` is over: no call is sent
  to it before then, and it is never ejected for it;
- a worker whose engine serves one request at a time takes its calls in *turns*, one at a
  time, queued in the gateway instead of in (or interrupting one another at) the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator

from core.errors import DeadlineExceeded, UpstreamAuthFailed, UpstreamRateLimited


class Retry(Exception):
    """A worker said to come back later (429): the call moves on to another worker."""


class Gate:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._refused: dict[str, str] = {}  # tier -> why
        self._cool_until: dict[tuple[str, str], float] = {}  # (tier, url) -> clock time
        self._turns: dict[str, asyncio.Semaphore] = {}  # url -> one call at a time

    # credentials -----------------------------------------------------------------------
    def refuse(self, tier: str, why: str) -> None:
        self._refused[tier] = why

    def accept(self, tier: str) -> None:
        self._refused.pop(tier, None)

    def refusal(self, tier: str) -> str | None:
        return self._refused.get(tier)

    @contextlib.contextmanager
    def screen(self, tier: str, url: str, default_wait_s: float) -> Iterator[None]:
        """Around one call to ``url``: a 429 cools the worker (``default_wait_s`` without a
        ``Retry-After``) and becomes ``Retry``; a 401/403 refuses the tier and goes on."""
        try:
            yield
        except UpstreamRateLimited as exc:
            wait = exc.retry_after if exc.retry_after is not None else default_wait_s
            self.cool(tier, url, wait)
            raise Retry(exc.message) from exc
        except UpstreamAuthFailed as exc:
            self.refuse(tier, exc.message)
            raise

    # rate limits -------------------------------------------------------------------------
    def cool(self, tier: str, url: str, seconds: float) -> None:
        until = self._clock() + seconds
        key = (tier, url)
        self._cool_until[key] = max(until, self._cool_until.get(key, 0.0))

    def cooling(self, tier: str, url: str) -> bool:
        until = self._cool_until.get((tier, url))
        if until is None:
            return False
        if self._clock() >= until:
            del self._cool_until[(tier, url)]
            return False
        return True

    def cool_left(self, tier: str, urls: Iterable[str]) -> float | None:
        """Seconds until the soonest of ``urls`` stops cooling; None if none is cooling."""
        now = self._clock()
        left = [self._cool_until[(tier, u)] - now for u in urls if self.cooling(tier, u)]
        return min(left, default=None)

    # one request at a time ----------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def turn(self, url: str, *, one_at_a_time: bool, within_s: float) -> AsyncIterator[None]:
        """Hold ``url``'s turn (a no-op unless ``one_at_a_time``); waiting for it longer than
        ``within_s`` is the request's deadline."""
        if not one_at_a_time:
            yield
            return
        turns = self._turns.setdefault(url, asyncio.Semaphore(1))
        try:
            async with asyncio.timeout(within_s):
                await turns.acquire()
        except TimeoutError:
            raise DeadlineExceeded(
                "the worker serves one request at a time and its queue did not clear in time"
            ) from None
        try:
            yield
        finally:
            turns.release()

    def forget(self, url: str) -> None:
        self._turns.pop(url, None)
        for key in [k for k in self._cool_until if k[1] == url]:
            del self._cool_until[key]
