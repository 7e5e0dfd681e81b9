"""The pool's state and its upkeep: workers per tier, health checks, load scrapes, discovery,
trial calls, readiness. ``workers.pool.WorkerPool`` adds the calls.

Every worker is checked every ``health_interval_s`` (ejected ones too: a passing check is how a
worker that was down comes back), as its engine allows (``workers.health``; a hosted API at
most every ``health_every_s``). A worker ejected for its calls while its checks pass gets
trial calls on its breaker's schedule (``workers.trials``). Load is scraped only from engines
that export it. Health checks and ``/metrics`` scrapes use the pool's ``httpx.AsyncClient``,
with the tier's credentials.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from core.errors import UpstreamRateLimited, UpstreamUnavailable
from workers.breaker import CircuitBreaker
from workers.client import WorkerClient
from workers.config import PoolConfig, TierConfig
from workers.credentials import TierCredentials
from workers.discovery import DnsDiscovery, Resolver, reconcile
from workers.engines import Engine
from workers.gate import Gate
from workers.health import Verdict, check
from workers.outage import rate_limited, retry_after, unavailable
from workers.signals import SignalBoard, WorkerLoad, scrape
from workers.trials import Trials
from workers.urls import server_root
from workers.worker import Check, Worker, judge

log = logging.getLogger("ttc.workers")


@dataclass
class PoolCounters:
    retries: dict[str, int] = field(default_factory=dict)  # per tier
    failures: dict[str, int] = field(default_factory=dict)  # per worker URL: failed calls
    resumed: dict[str, int] = field(default_factory=dict)  # per tier: streams continued elsewhere


class PoolUpkeep:
    def __init__(
        self,
        tiers: dict[str, TierConfig],
        config: PoolConfig,
        engines: dict[str, Engine],
        credentials: Mapping[str, TierCredentials],
        clock: Callable[[], float],
        resolver: Resolver,
        transport: httpx.AsyncBaseTransport | None,
    ) -> None:
        self._tiers = tiers
        self._config = config
        self._clock = clock
        self.engines = engines
        self._credentials = credentials
        limits = httpx.Limits(max_connections=config.max_connections, max_keepalive_connections=64)
        self._http = httpx.AsyncClient(limits=limits, trust_env=False, transport=transport)
        self.gate = Gate(clock)
        self.signals = SignalBoard(config.signal_max_age_s, clock)
        self.workers: dict[str, list[Worker]] = {
            name: [self._new_worker(name, url) for url in tier.urls()]
            for name, tier in tiers.items()
        }
        self._discovery = {
            name: DnsDiscovery(t.discovery, resolver) for name, t in tiers.items() if t.discovery
        }
        self.counters = PoolCounters()
        self._trials = Trials(config.breaker.trial_timeout_s, self.counters.failures, clock)
        self._tasks: list[asyncio.Task[None]] = []
        self.next_check: float | None = None  # clock time of the next round of checks

    def client_for(self, worker: Worker) -> WorkerClient:
        raise NotImplementedError  # the pool's data plane

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
        self.next_check = self._clock() + in_s

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._trials.close()
        await self._http.aclose()

    # health ------------------------------------------------------------------------------
    async def check_health(self) -> None:
        """Check every worker, ejected ones included: one check per interval is cheap, and
        it is how a worker that was down is re-admitted within one interval. Then start the
        trial calls that are due."""
        everyone = [w for ws in self.workers.values() for w in ws]
        await asyncio.gather(*(self._check(w) for w in everyone))
        self._trials.start_due(everyone, self.client_for, lambda w: self._tiers[w.tier].model)

    async def _check(self, worker: Worker) -> None:
        engine = self.engines[worker.tier]
        since = self._clock() - worker.last_check
        if worker.check_ok is not None and since < engine.health_every_s:
            return  # a hosted API: checked sparingly
        if engine.one_at_a_time and worker.in_flight > 0:
            # Its checks queue behind the call it is serving (the llama.cpp server holds one
            # lock for both): a check now would say nothing; the call's own outcome will.
            return
        model = self._tiers[worker.tier].model
        headers = self._credentials[worker.tier].headers()
        timeout = self._config.health_timeout_s
        verdict = await check(self._http, worker.url, model, engine, headers, timeout)
        if verdict.refused is not None:
            self._refused(worker, verdict.refused)
            return
        judge(worker, verdict.check, self._clock(), self._config.busy_grace_s)
        self._note(worker, verdict)

    def _refused(self, worker: Worker, status: int) -> None:
        """The upstream answered but refused the tier's key: the tier is not ready, and the
        worker is not blamed (its breaker stays as it is; its calls would say the same)."""
        why = f"its upstream refused the gateway's credentials ({status})"
        self.gate.refuse(worker.tier, why)
        worker.last_check = self._clock()
        worker.check_ok = False
        worker.last_error = why

    def _note(self, worker: Worker, verdict: Verdict) -> None:
        """What a check says about the tier beyond the worker: its model, its credentials."""
        if verdict.missing_model:
            model = self._tiers[worker.tier].model
            worker.last_error = f"its upstream does not list the model '{model}'"
        elif verdict.check is Check.OK:
            self.gate.accept(worker.tier)

    def ready(self) -> dict[str, bool]:
        """Per tier: is at least one worker known healthy, and are its credentials accepted."""
        return {
            t: any(w.healthy for w in ws) and self.gate.refusal(t) is None
            for t, ws in self.workers.items()
        }

    def not_ready(self) -> dict[str, str]:
        """Why each tier that is not ready is not (for ``/ready``); never a worker's address."""
        reasons: dict[str, str] = {}
        for tier, ok in self.ready().items():
            if ok:
                continue
            failed = [w.last_error for w in self.workers[tier] if w.last_error]
            why = self.gate.refusal(tier) or (failed[0] if failed else "")
            reasons[tier] = why or "no worker has passed a health check yet"
        return reasons

    # no worker left ----------------------------------------------------------------------
    def _no_worker(
        self, tier: str, tried: dict[str, Worker]
    ) -> UpstreamUnavailable | UpstreamRateLimited:
        """429 when what keeps the tier away is its upstreams' rate limits, else the 503."""
        limited = rate_limited(tier, self.gate, self.workers[tier], tried)
        return limited if limited is not None else self._unavailable(tier, tried)

    def _unavailable(self, tier: str, tried: dict[str, Worker]) -> UpstreamUnavailable:
        seconds = self.retry_after(tier)
        return unavailable(tier, list(tried.values()), self.workers[tier], seconds)

    def retry_after(self, tier: str) -> int:
        """Seconds until a worker of ``tier`` may take a request (see ``workers.outage``)."""
        now = self._clock()
        check_in = None if self.next_check is None else max(0.0, self.next_check - now)
        return retry_after(self.workers[tier], check_in, self._config.retry_after_s)

    # load ----------------------------------------------------------------------------------
    async def scrape_signals(self) -> None:
        """Read the load of every worker not ejected whose engine exports it."""
        targets: dict[str, Worker] = {}
        for ws in self.workers.values():
            for w in ws:
                if self.engines[w.tier].load is not None and w.breaker.admits():
                    targets.setdefault(w.url, w)
        found = await asyncio.gather(*(self._scrape(w) for w in targets.values()))
        for url, signal in zip(targets, found, strict=True):
            if signal is not None:
                self.signals.update(url, signal)

    async def _scrape(self, worker: Worker) -> WorkerLoad | None:
        gauges = self.engines[worker.tier].load
        assert gauges is not None
        headers = self._credentials[worker.tier].headers()
        timeout = self._config.scrape_interval_s
        root = server_root(worker.url)
        return await scrape(self._http, root, timeout, self._clock, gauges, headers)

    # discovery -----------------------------------------------------------------------------
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
            self._forget(url)
        await asyncio.gather(*(self._check(w) for w in added))

    def _forget(self, url: str) -> None:
        """A worker gone from DNS: drop what is kept about it."""
        self.signals.forget(url)
        self.gate.forget(url)
        self.counters.failures.pop(url, None)


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
