"""``WorkerPool``: the ``Backend`` policies call, over every worker of every tier.

Choice: among the workers whose breaker admits a call (checked-healthy first; an ejected one
only as the single trial of a half-open breaker, when nothing else is left),
``workers.balance.choose`` weighs load (the gateway's in-flight calls, vLLM's scraped queue and
KV cache) against prefix affinity.

Affinity (``pool.affinity``): ``prefix``, the default, hashes the start of the prompt without
a trailing assistant turn, so every sample, probe and step of a request lands together, as a
request id would make them, *and* so do requests sharing a system prompt, few-shot examples or
earlier turns, which is where vLLM's prefix cache pays. The caller's key (policies pass the
request id) is unique per request, so letting it win would forfeit that sharing for nothing:
it is used only for a body without messages, or with ``affinity: caller``.

Failures: a refused connection, a timeout, a 5xx/429 or an unusable answer *before any output*
is retried on another worker, ``max_attempts`` in all, all within the tier's
``request_timeout_s`` (a retry gets only what is left; nothing left is a 504). A 400/422 is
the client's and is not retried. After output, a failure is ``StreamInterrupted`` (an
``UpstreamError`` with the usage so far); the server sends an error event and ``[DONE]``.
No worker left: ``UpstreamUnavailable`` (503) saying what the last failure was, with a
``Retry-After`` of when the next try is due: the next health check, which re-admits a worker
that was down, or the end of a breaker's backoff (at most ``retry_after_s``). A stream silent for
``stream_idle_timeout_s`` is a dead worker; a non-streamed call waiting on a worker that its
health checks eject (a hung process or a lost node sends no reset) moves to another worker.

Cancellation (the service's deadline, a client gone) cancels the upstream call and closes its
connection, so vLLM aborts the generation; the worker is neither blamed nor retried.

Chat calls (the data plane) share one transport (``workers.transport``: an aiohttp session);
health checks, ``/metrics`` scrapes and discovery use the pool's ``httpx.AsyncClient``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import httpx

from core.backend import Completion, Delta
from core.errors import (
    DeadlineExceeded,
    ModelNotFound,
    StreamInterrupted,
    UpstreamError,
    UpstreamUnavailable,
    WorkerFailed,
)
from core.metering import StreamProgress
from core.tracing import CallTracer, traced_call, traced_stream
from workers.balance import Load, affinity_key, choose, scores
from workers.breaker import BreakerState, CircuitBreaker
from workers.client import WorkerClient, WorkerClients, attempt_timeout
from workers.config import PoolConfig, TierConfig
from workers.discovery import DnsDiscovery, Resolver, reconcile, resolve_addresses
from workers.outage import retry_after, unavailable
from workers.signals import SignalBoard, scrape
from workers.streams import after_output, interrupted
from workers.transport import Transport
from workers.worker import (
    Worker,
    answered,
    attempt,
    judge,
    probe,
    unless_hung,
)

__all__ = ["PoolCounters", "StreamInterrupted", "Worker", "WorkerPool"]

log = logging.getLogger("ttc.workers")


@dataclass
class PoolCounters:
    retries: dict[str, int] = field(default_factory=dict)  # per tier
    failures: dict[str, int] = field(default_factory=dict)  # per worker URL: failed calls


class WorkerPool:
    def __init__(
        self,
        tiers: dict[str, TierConfig],
        config: PoolConfig,
        *,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        resolver: Resolver = resolve_addresses,
        transport: httpx.AsyncBaseTransport | None = None,
        chat_transport: Transport | None = None,
        tracer: CallTracer | None = None,
    ) -> None:
        """``clock``, ``rng``, ``resolver``, ``transport`` (the httpx control plane's: health
        checks, ``/metrics``) and ``chat_transport`` (the data plane's) are seams for tests;
        ``tracer`` (tracing on) opens a span per upstream attempt (``core.tracing``)."""
        self._tiers = tiers
        self._tracer = tracer
        self._config = config
        self._clock = clock
        self._rng = rng or random.Random()
        limits = httpx.Limits(max_connections=config.max_connections, max_keepalive_connections=64)
        self._http = httpx.AsyncClient(limits=limits, trust_env=False, transport=transport)
        self._chat = WorkerClients(config.max_connections, chat_transport)
        self.signals = SignalBoard(config.signal_max_age_s, clock)
        self.workers: dict[str, list[Worker]] = {
            name: [self._new_worker(name, url) for url in tier.urls()]
            for name, tier in tiers.items()
        }
        self._discovery = {
            name: DnsDiscovery(t.discovery, resolver) for name, t in tiers.items() if t.discovery
        }
        self.counters = PoolCounters()
        self._tasks: list[asyncio.Task[None]] = []
        self._next_check: float | None = None  # clock time of the next round of checks

    def _new_worker(self, tier: str, url: str, *, static: bool = True) -> Worker:
        return Worker(tier, url, CircuitBreaker(self._config.breaker, self._clock), static=static)

    # lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        """Resolve discovered tiers, check every worker once, then keep doing it."""
        await self.discover()
        await self.check_health()
        c = self._config
        loops: list[tuple[str, Coroutine[Any, Any, None]]] = [
            ("pool-health", _every(c.health_interval_s, self.check_health, self._checks_due)),
            ("pool-signals", _every(c.scrape_interval_s, self.scrape_signals)),
        ]
        for tier, found in self._discovery.items():
            step = functools.partial(self._discover_tier, tier, found)
            loops.append((f"pool-discovery-{tier}", _every(found.config.interval_s, step)))
        self._tasks = [asyncio.create_task(loop, name=name) for name, loop in loops]

    def _checks_due(self, in_s: float) -> None:
        self._next_check = self._clock() + in_s

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._http.aclose()
        await self._chat.close()

    # health, signals, discovery --------------------------------------------------------
    async def check_health(self) -> None:
        """Check every worker, ejected ones included: one ``GET /health`` per interval is
        cheap, and it is how a worker that was down is re-admitted within one interval."""
        await asyncio.gather(*(self._check(w) for ws in self.workers.values() for w in ws))

    async def _check(self, worker: Worker) -> None:
        model = self._tiers[worker.tier].model
        verdict = await probe(self._http, worker.url, model, self._config.health_timeout_s)
        judge(worker, verdict, self._clock(), self._config.busy_grace_s)

    async def scrape_signals(self) -> None:
        """Read vLLM's ``/metrics`` of every worker not ejected."""
        urls = sorted({w.url for ws in self.workers.values() for w in ws if w.breaker.admits()})
        timeout = self._config.scrape_interval_s
        found = await asyncio.gather(*(scrape(self._http, u, timeout, self._clock) for u in urls))
        for url, signal in zip(urls, found, strict=True):
            if signal is not None:
                self.signals.update(url, signal)

    async def discover(self) -> None:
        await asyncio.gather(*(self._discover_tier(t, d) for t, d in self._discovery.items()))

    async def _discover_tier(self, tier: str, found: DnsDiscovery) -> None:
        urls = await found.urls()
        if urls is None:
            log.warning("DNS lookup of %s failed; keeping tier %s as it is", found.config.dns, tier)
            return
        make = functools.partial(self._new_worker, tier, static=False)
        workers, added, removed = reconcile(self.workers[tier], urls, make)
        if not added and not removed:
            return
        self.workers[tier] = workers
        log.warning("tier %s: %d workers after DNS, %d new", tier, len(workers), len(added))
        in_use = {w.url for ws in self.workers.values() for w in ws}
        for url in removed - in_use:
            self.signals.forget(url)
            self._chat.forget(url)
            self.counters.failures.pop(url, None)
        await asyncio.gather(*(self._check(w) for w in added))

    def ready(self) -> dict[str, bool]:
        """Per tier: is at least one worker known healthy."""
        return {t: any(w.healthy for w in ws) for t, ws in self.workers.items()}

    # selection -------------------------------------------------------------------------
    def tier_model(self, tier: str) -> str:
        if tier not in self._tiers:
            raise ModelNotFound(f"The model '{tier}' does not exist", param="model")
        return self._tiers[tier].model

    def _pick(self, tier: str, key: str | None, tried: dict[str, Worker]) -> Worker:
        open_ = [w for w in self.workers[tier] if w.url not in tried and w.breaker.admits()]
        if not open_:
            raise self._unavailable(tier, tried)
        best = min(w.rank for w in open_)
        group = [w for w in open_ if w.rank == best]
        loads = [Load(w.in_flight, self.signals.fresh(w.url)) for w in group]
        c = self._config
        i = choose(
            [w.url for w in group],
            scores(loads),
            key,
            factor=c.affinity_overload_factor,
            slack=c.affinity_overload_slack,
            rng=self._rng,
        )
        worker = group[i]
        if worker.breaker.state is not BreakerState.CLOSED:
            worker.breaker.acquire()  # the one trial of a half-open breaker
        return worker

    def _begin(
        self,
        tier: str,
        key: str | None,
        tried: dict[str, Worker],
        deadline: float,
        *,
        stream: bool,
    ) -> tuple[Worker, WorkerClient, aiohttp.ClientTimeout]:
        """Pick a worker for the next attempt and a client whose timeouts fit the deadline."""
        left = deadline - self._clock()
        if left <= 0:
            raise DeadlineExceeded(f"tier '{tier}' did not answer within its request timeout")
        worker = self._pick(tier, key, tried)
        if tried:
            self.counters.retries[tier] = self.counters.retries.get(tier, 0) + 1
        tried[worker.url] = worker
        worker.requests += 1
        t = self._tiers[tier]
        read = t.stream_idle_timeout_s if stream else t.request_timeout_s
        timeout = attempt_timeout(min(read, left), min(t.connect_timeout_s, left))
        return worker, self._chat.get(worker.url), timeout

    def _attempt(self, worker: Worker) -> contextlib.AbstractContextManager[None]:
        return attempt(worker, self.counters.failures, self._clock)

    # Backend ---------------------------------------------------------------------------
    def _prepare(
        self, tier: str, body: dict[str, Any], affinity: str | None
    ) -> tuple[dict[str, Any], str | None, float]:
        """(the body for upstream, its placement key, the deadline of all its attempts)."""
        body = {**body, "model": self.tier_model(tier)}
        c = self._config
        key = affinity_key(c.affinity, body, affinity, c.affinity_prefix_chars)
        return body, key, self._clock() + self._tiers[tier].request_timeout_s

    async def chat(
        self, tier: str, body: dict[str, Any], *, affinity: str | None = None
    ) -> Completion:
        body, key, deadline = self._prepare(tier, body, affinity)
        tried: dict[str, Worker] = {}
        for _ in range(self._config.max_attempts):
            worker, client, timeout = self._begin(tier, key, tried, deadline, stream=False)
            # _attempt blames the worker, then suppress moves on to the next attempt.
            with contextlib.suppress(WorkerFailed, UpstreamError), self._attempt(worker):
                if self._tracer is None:
                    return await unless_hung(worker, client.chat(body, timeout))
                span = self._tracer.start(tier, worker.url, stream=False, attempt=len(tried))
                call = unless_hung(worker, client.chat(body, timeout, span.headers))
                return await traced_call(span, call)
        raise self._unavailable(tier, tried)

    async def stream_chat(
        self, tier: str, body: dict[str, Any], *, affinity: str | None = None
    ) -> AsyncIterator[Delta]:
        body, key, deadline = self._prepare(tier, body, affinity)
        tried: dict[str, Worker] = {}
        for _ in range(self._config.max_attempts):
            worker, client, timeout = self._begin(tier, key, tried, deadline, stream=True)
            seen = StreamProgress()
            up = functools.partial(answered, worker)
            if self._tracer is None:
                deltas = after_output(client.stream(body, timeout), seen, up)
            else:
                span = self._tracer.start(tier, worker.url, stream=True, attempt=len(tried))
                upstream = client.stream(body, timeout, span.headers)
                deltas = traced_stream(span, after_output(upstream, seen, up), seen)
            try:
                with self._attempt(worker):
                    async for delta in deltas:
                        worker.last_progress = self._clock()
                        yield delta
                return
            except (WorkerFailed, UpstreamError) as exc:
                if seen.started:
                    raise interrupted(seen, exc) from exc
            finally:
                await deltas.aclose()  # closes the connection: vLLM aborts the request
        raise self._unavailable(tier, tried)

    def _unavailable(self, tier: str, tried: dict[str, Worker]) -> UpstreamUnavailable:
        seconds = self.retry_after(tier)
        return unavailable(tier, list(tried.values()), self.workers[tier], seconds)

    def retry_after(self, tier: str) -> int:
        """Seconds until a worker of ``tier`` may take a request (see ``workers.outage``)."""
        now = self._clock()
        check_in = None if self._next_check is None else max(0.0, self._next_check - now)
        return retry_after(self.workers[tier], check_in, self._config.retry_after_s)


async def _every(
    interval_s: float,
    step: Callable[[], Awaitable[None]],
    scheduled: Callable[[float], None] = lambda _: None,
) -> None:
    """Run ``step`` every ``interval_s``; ``scheduled`` hears when the next run is due."""
    while True:
        scheduled(interval_s)
        await asyncio.sleep(interval_s)
        try:
            await step()
        except Exception:  # a bug in one round must not end health checking for good
            log.exception("pool background step failed")
