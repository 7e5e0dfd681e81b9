"""``WorkerPool``: the ``Backend`` policies call, over every worker of every tier.

Choice: among the workers whose breaker admits a call (checked-healthy first; an ejected one
only as the single trial of a half-open breaker, when nothing else is left) and that are not
cooling off a 429 (``workers.gate``), ``workers.balance.choose`` weighs load (the gateway's
in-flight calls, the engine's scraped queue and KV cache) against prefix affinity.

Affinity (``pool.affinity``): ``prefix``, the default, hashes the start of the prompt without
a trailing assistant turn, so every sample, probe and step of a request lands together, as a
request id would make them, *and* so do requests sharing a system prompt, few-shot examples or
earlier turns, which is where vLLM's prefix cache pays. The caller's key (policies pass the
request id) is unique per request, so letting it win would forfeit that sharing for nothing:
it is used only for a body without messages, or with ``affinity: caller``.

Engines (``workers.engines``): each body is made fit for the tier's engine before a worker is
picked (``bodies.adapt``: what it lacks is dropped or refused); a vote on an engine without
``n`` is drawn as separate calls (``workers.fanout``); an engine that serves one request at a
time gets its calls in turns. Every call carries the tier's credentials
(``workers.credentials``).

Failures: a refused connection, a timeout, a 5xx or an unusable answer *before any output* is
retried on another worker, ``max_attempts`` in all, within the tier's ``request_timeout_s`` (a
retry gets what is left; nothing left is a 504). A 429 moves on to another worker, which cools
off for its ``Retry-After`` (every worker cooling: the client's 429). No worker is blamed for
a 400/422 (the body's), a 401/403 (the tier's key: the tier turns not ready) or a 404/405/501
(an endpoint the upstream lacks): see ``workers.statuses``. After output, a stream that can
be is continued on another worker (``workers.resume``); else the failure is
``StreamInterrupted`` (with the usage so far). No worker left: ``UpstreamUnavailable`` (503)
naming the last failure, ``Retry-After`` when the next try is due (``workers.outage``). A
stream silent for ``stream_idle_timeout_s`` is a dead worker; a non-streamed call waiting on a
worker that its health checks eject moves to another worker. Cancellation (a deadline, a
client gone) closes the upstream connection, so the engine aborts; no worker is blamed.
Checks, scrapes, discovery and trial calls are the pool's upkeep (``workers.upkeep``).
"""

from __future__ import annotations

import contextlib
import functools
import os
import random
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from typing import Any

import aiohttp
import httpx

from core.backend import Completion, Delta
from core.errors import (
    DeadlineExceeded,
    ModelNotFound,
    StreamInterrupted,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamUnavailable,
    WorkerFailed,
)
from core.metering import StreamProgress
from core.tracing import CallTracer, traced_call, traced_stream
from workers import fanout
from workers.balance import Load, affinity_key, choose, scores
from workers.breaker import BreakerState
from workers.client import TierLink, WorkerClient, WorkerClients, attempt_timeout
from workers.config import PoolConfig, TierConfig
from workers.credentials import TierCredentials
from workers.discovery import Resolver, resolve_addresses
from workers.engines import Engine, engine_for
from workers.engines.base import N
from workers.engines.bodies import adapt
from workers.gate import Retry
from workers.resume import Resumption, relayed, resumable
from workers.streams import after_output, interrupted
from workers.transport import Transport
from workers.upkeep import PoolCounters, PoolUpkeep
from workers.worker import Worker, answered, attempt, unless_hung

__all__ = ["PoolCounters", "StreamInterrupted", "Worker", "WorkerPool"]


class WorkerPool(PoolUpkeep):
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
        env: Mapping[str, str] = os.environ,
    ) -> None:
        """``clock``, ``rng``, ``resolver``, ``transport`` (the httpx control plane's: health
        checks, ``/metrics``) and ``chat_transport`` (the data plane's) are seams for tests;
        ``tracer`` (tracing on) opens a span per upstream attempt (``core.tracing``); ``env``
        holds the tiers' ``api_key_env`` variables (a missing one is a ``ValueError`` naming
        it)."""
        credentials = {name: TierCredentials(name, t, env) for name, t in tiers.items()}
        engines = {name: engine_for(t) for name, t in tiers.items()}
        super().__init__(tiers, config, engines, credentials, clock, resolver, transport)
        self._tracer = tracer
        self._rng = rng or random.Random()
        links = {name: TierLink(engines[name], credentials[name]) for name in tiers}
        self._clients = WorkerClients(config.max_connections, chat_transport, links)

    def client_for(self, worker: Worker) -> WorkerClient:
        return self._clients.get(worker.url, worker.tier)

    def _forget(self, url: str) -> None:
        super()._forget(url)
        self._clients.forget(url)

    async def close(self) -> None:
        await super().close()
        await self._clients.close()

    # what tiers serve --------------------------------------------------------------------
    def tier_model(self, tier: str) -> str:
        if tier not in self._tiers:
            raise ModelNotFound(f"The model '{tier}' does not exist", param="model")
        return self._tiers[tier].model

    def engine(self, tier: str) -> Engine:
        self.tier_model(tier)  # an unknown tier is a 404
        return self.engines[tier]

    def serves(self, tier: str, capability: str) -> bool:
        """Does ``tier``'s engine serve ``capability`` (``workers.engines.CAPABILITIES``)?"""
        return self.engine(tier).can(capability)

    # selection -------------------------------------------------------------------------
    def _pick(self, tier: str, key: str | None, tried: dict[str, Worker]) -> Worker:
        open_ = [
            w
            for w in self.workers[tier]
            if w.url not in tried and w.breaker.admits() and not self.gate.cooling(tier, w.url)
        ]
        if not open_:
            raise self._no_worker(tier, tried)
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
        self, tier: str, key: str | None, tried: dict[str, Worker], deadline: float
    ) -> Worker:
        """Pick a worker for the next attempt."""
        if deadline - self._clock() <= 0:
            raise DeadlineExceeded(f"tier '{tier}' did not answer within its request timeout")
        worker = self._pick(tier, key, tried)
        if tried:
            self.counters.retries[tier] = self.counters.retries.get(tier, 0) + 1
        tried[worker.url] = worker
        worker.requests += 1
        return worker

    def _timeout(self, tier: str, deadline: float, *, stream: bool) -> aiohttp.ClientTimeout:
        """The timeouts of an attempt starting now, fit to the deadline."""
        left = max(deadline - self._clock(), 0.001)
        t = self._tiers[tier]
        read = t.stream_idle_timeout_s if stream else t.request_timeout_s
        return attempt_timeout(min(read, left), min(t.connect_timeout_s, left))

    @contextlib.asynccontextmanager
    async def _turn(self, worker: Worker, deadline: float) -> AsyncIterator[None]:
        engine = self.engines[worker.tier]
        within = deadline - self._clock()
        async with self.gate.turn(worker.url, one_at_a_time=engine.one_at_a_time, within_s=within):
            yield

    def _attempt(self, worker: Worker) -> contextlib.AbstractContextManager[None]:
        return attempt(worker, self.counters.failures, self._clock)

    def _screen(self, worker: Worker) -> contextlib.AbstractContextManager[None]:
        return self.gate.screen(worker.tier, worker.url, self._config.retry_after_s)

    # Backend ---------------------------------------------------------------------------
    def _prepare(
        self, tier: str, body: dict[str, Any], affinity: str | None
    ) -> tuple[dict[str, Any], str | None, float]:
        """(the body for upstream, its placement key, the deadline of all its attempts)."""
        body = adapt(self.engine(tier), tier, {**body, "model": self.tier_model(tier)})
        c = self._config
        key = affinity_key(c.affinity, body, affinity, c.affinity_prefix_chars)
        return body, key, self._clock() + self._tiers[tier].request_timeout_s

    def _fans_out(self, tier: str, body: dict[str, Any]) -> bool:
        return fanout.samples(body) > 1 and not self.serves(tier, N)

    async def chat(
        self, tier: str, body: dict[str, Any], *, affinity: str | None = None
    ) -> Completion:
        if self._fans_out(tier, body):
            return await fanout.chat(
                functools.partial(self._chat_one, tier, affinity=affinity), body
            )
        return await self._chat_one(tier, body, affinity)

    async def _chat_one(
        self, tier: str, body: dict[str, Any], affinity: str | None = None
    ) -> Completion:
        body, key, deadline = self._prepare(tier, body, affinity)
        tried: dict[str, Worker] = {}
        for _ in range(self._config.max_attempts):
            worker = self._begin(tier, key, tried, deadline)
            async with self._turn(worker, deadline):
                timeout = self._timeout(tier, deadline, stream=False)
                # _attempt blames the worker, then suppress moves on to the next attempt.
                with (
                    contextlib.suppress(WorkerFailed, UpstreamError, Retry),
                    self._attempt(worker),
                    self._screen(worker),
                ):
                    done = await self._call(worker, body, timeout, len(tried))
                    self.gate.accept(tier)
                    return done
        raise self._no_worker(tier, tried)

    async def _call(
        self, worker: Worker, body: dict[str, Any], timeout: aiohttp.ClientTimeout, n: int
    ) -> Completion:
        client = self.client_for(worker)
        if self._tracer is None:
            return await unless_hung(worker, client.chat(body, timeout))
        span = self._tracer.start(worker.tier, worker.url, stream=False, attempt=n)
        return await traced_call(
            span, unless_hung(worker, client.chat(body, timeout, span.headers))
        )

    def stream_chat(
        self, tier: str, body: dict[str, Any], *, affinity: str | None = None
    ) -> AsyncIterator[Delta]:
        if self._fans_out(tier, body):
            return fanout.stream(functools.partial(self._stream_one, tier, affinity=affinity), body)
        return self._stream_one(tier, body, affinity=affinity)

    async def _stream_one(
        self, tier: str, body: dict[str, Any], affinity: str | None = None
    ) -> AsyncIterator[Delta]:
        body, key, deadline = self._prepare(tier, body, affinity)
        tried: dict[str, Worker] = {}
        sent = Resumption(body, self._tiers[tier].model_profile().thinking)
        if not resumable(self.engines[tier], body):
            sent.possible = False
        for _ in range(self._config.max_attempts):
            worker = self._next(tier, key, tried, deadline, sent)
            async with self._turn(worker, deadline):
                timeout = self._timeout(tier, deadline, stream=True)
                seen = StreamProgress()
                deltas = self._open_stream(worker, sent.continuing(), timeout, seen, len(tried))
                out = relayed(deltas, sent, worker, self._clock)
                try:
                    with self._attempt(worker), self._screen(worker):
                        async for delta in out:
                            yield delta
                    self.gate.accept(tier)
                    return
                except (WorkerFailed, UpstreamError) as exc:
                    if seen.started and not self._resumes(tier, sent, seen):
                        raise interrupted(seen, exc, sent.spent) from exc
                except Retry:
                    pass
                finally:
                    await out.aclose()
                    await deltas.aclose()  # closes the connection: the engine aborts the request
        raise self._no_worker(tier, tried)

    def _resumes(self, tier: str, sent: Resumption, seen: StreamProgress) -> bool:
        """Will the stream that failed after output go on on another worker?"""
        if not sent.resume(seen):
            return False
        self.counters.resumed[tier] = self.counters.resumed.get(tier, 0) + 1
        return True

    def _next(
        self,
        tier: str,
        key: str | None,
        tried: dict[str, Worker],
        deadline: float,
        sent: Resumption,
    ) -> Worker:
        """The worker of the next attempt; once a stream was resumed, no worker left to
        continue it is the interruption the client would have had without resuming."""
        try:
            return self._begin(tier, key, tried, deadline)
        except (UpstreamUnavailable, UpstreamRateLimited, DeadlineExceeded) as exc:
            if not sent.resumed:
                raise
            used = sent.spent
            raise StreamInterrupted(
                f"the worker failed mid-stream and no other worker could continue it"
                f" ({exc.message}); usage so far: {used.prompt_tokens} prompt and"
                f" {used.completion_tokens} completion tokens",
                usage=used,
            ) from exc

    def _open_stream(
        self,
        worker: Worker,
        body: dict[str, Any],
        timeout: aiohttp.ClientTimeout,
        seen: StreamProgress,
        n: int,
    ) -> AsyncGenerator[Delta, None]:
        client = self.client_for(worker)
        up = functools.partial(answered, worker)
        if self._tracer is None:
            return after_output(client.stream(body, timeout), seen, up)
        span = self._tracer.start(worker.tier, worker.url, stream=True, attempt=n)
        upstream = client.stream(body, timeout, span.headers)
        return traced_stream(span, after_output(upstream, seen, up), seen)
