"""Prometheus metrics, all prefixed ``ttc_`` (never ``vllm:``), in a registry per app.

Request-level metrics are recorded from each finished request's ``PolicyResult`` and
``Decision``; pool and worker state is read from the pool at scrape time by a collector, so
``workers`` and ``policies`` need no Prometheus themselves.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from core.metering import MeteredBackend
from core.request import Decision
from core.usage import UsageLedger
from router.router import Router
from server.metrics.router import RouterCollector
from state.redis import SharedRedis
from workers.breaker import BreakerState
from workers.pool import WorkerPool
from workers.signals import WorkerLoad

_LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
_SAMPLES = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64)
_TOKENS = (16, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 65536)
Exemplar = dict[str, str]  # {"trace_id": ...}: links a sample to its trace (OpenMetrics)
_REDIS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25)  # calls end at timeout_s


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "ttc_requests",
            "Chat requests finished, by outcome.",
            ["tier", "policy", "status"],
            registry=r,
        )
        self.in_flight = Gauge("ttc_requests_in_flight", "Chat requests being served.", registry=r)
        self.latency = Histogram(
            "ttc_request_duration_seconds",
            "End-to-end request latency.",
            ["tier", "policy", "stream"],
            buckets=_LATENCY,
            registry=r,
        )
        self.ttft = Histogram(
            "ttc_time_to_first_token_seconds",
            "Time to the first content byte of a stream.",
            ["tier", "policy"],
            buckets=_LATENCY,
            registry=r,
        )
        self.tokens = Counter(
            "ttc_tokens",
            "Tokens spent, by tier, kind (sample, probe, judge, draft) and direction.",
            ["tier", "kind", "direction"],
            registry=r,
        )
        self.tokens_per_request = Histogram(
            "ttc_request_tokens",
            "Completion tokens spent per request, all kinds.",
            ["policy"],
            buckets=_TOKENS,
            registry=r,
        )
        self.samples = Histogram(
            "ttc_samples_per_request",
            "Samples drawn per request.",
            ["policy"],
            buckets=_SAMPLES,
            registry=r,
        )
        self.early_stops = Counter(
            "ttc_early_stops",
            "Requests a policy stopped early, by reason.",
            ["policy", "reason"],
            registry=r,
        )
        self.tokens_saved = Counter(
            "ttc_tokens_saved",
            "Completion tokens not spent thanks to "
            "early stopping, against the policy's full budget.",
            ["policy"],
            registry=r,
        )
        self.spec_steps = Counter(
            "ttc_speculative_steps",
            "Speculative reasoning steps drafted by the small tier, by outcome.",
            ["outcome"],
            registry=r,
        )
        self.decisions = Counter(
            "ttc_router_decisions", "Router decisions.", ["band", "tier", "policy"], registry=r
        )
        self.difficulty = Histogram(
            "ttc_router_difficulty",
            "Predicted difficulty (0 easy..1 hard).",
            buckets=tuple(i / 10 for i in range(1, 11)),
            registry=r,
        )
        self.errors = Counter(
            "ttc_errors", "Errors returned to clients, by code.", ["status", "code"], registry=r
        )
        self._add_state_metrics(r)
        self._add_contract_metrics(r)

    def _add_state_metrics(self, r: CollectorRegistry) -> None:
        self.redis_latency = Histogram(
            "ttc_redis_latency_seconds", "Redis call latency.", ["op"], buckets=_REDIS, registry=r
        )
        self.redis_errors = Counter(
            "ttc_redis_errors", "Redis calls that failed or timed out.", ["op", "kind"], registry=r
        )
        self.redis_breaker_open = Gauge(
            "ttc_redis_breaker_open", "1 while the Redis circuit breaker is not closed.", registry=r
        )
        self.cache_requests = Counter(
            "ttc_cache_requests", "Response cache lookups, by result.", ["result"], registry=r
        )
        self.unfinished_tokens = Counter(
            "ttc_unfinished_tokens",
            "Tokens spent by requests that failed or whose client left (billed all the same).",
            ["outcome"],
            registry=r,
        )
        self.rate_limited = Counter(
            "ttc_rate_limited", "Requests refused with a 429, by limit.", ["reason"], registry=r
        )
        # Budget reservations (state.reservations): a request's worst case held before dispatch.
        self.budget_reserved = Counter(
            "ttc_budget_reserved_tokens", "Tokens reserved against daily budgets.", registry=r
        )
        self.budget_rejected = Counter(
            "ttc_budget_reservation_rejected",
            "Reservations refused (429), by cause: spent (the day's spend leaves no room) or "
            "reserved (requests in flight hold it).",
            ["reason"],
            registry=r,
        )
        self.budget_shrunk = Counter(
            "ttc_budget_reservation_shrunk",
            "Requests whose contract was shrunk to the budget left (over_budget: shrink).",
            registry=r,
        )
        self.budget_in_flight = Gauge(
            "ttc_budget_reserved_in_flight_tokens",
            "Tokens this replica's requests in flight hold in reservations.",
            registry=r,
        )

    def redis_call(self, op: str, seconds: float, error: str | None) -> None:
        """``state.redis.RedisObserver``: one Redis call's latency and outcome."""
        self.redis_latency.labels(op).observe(seconds)
        if error is not None:
            self.redis_errors.labels(op, error).inc()

    def watch_redis(self, redis: SharedRedis) -> None:
        self.redis_breaker_open.set_function(lambda: float(redis.breaker.state != "closed"))

    def watch_router(self, current: Callable[[], Router]) -> None:
        self.registry.register(RouterCollector(current))

    def watch_pool(self, pool: WorkerPool) -> None:
        self.registry.register(PoolCollector(pool))

    def record(
        self,
        decision: Decision,
        usage: UsageLedger,
        report: Mapping[str, Any],
        exemplar: Exemplar | None = None,
    ) -> None:
        """A finished request; ``exemplar`` (its trace id, tracing on) rides on its tokens."""
        policy = decision.params.name
        self.count_tokens(usage, exemplar)
        self.tokens_per_request.labels(policy).observe(usage.total.completion_tokens, exemplar)
        self.samples.labels(policy).observe(float(report.get("samples", 1)))
        if report.get("early_stopped"):
            self.early_stops.labels(policy, str(report.get("stop_reason", "unknown"))).inc()
        saved = report.get("tokens_saved")
        if isinstance(saved, int | float) and saved > 0:
            self.tokens_saved.labels(policy).inc(saved)
        for outcome in ("accepted", "rejected"):
            steps = report.get(f"steps_{outcome}")
            if isinstance(steps, int) and steps > 0:
                self.spec_steps.labels(outcome).inc(steps)
        self.decisions.labels(decision.band or "none", decision.tier, policy).inc()
        if decision.difficulty is not None:
            self.difficulty.observe(decision.difficulty)

    def count_tokens(self, usage: UsageLedger, exemplar: Exemplar | None = None) -> None:
        for kind, tier, used in usage.items():
            self.tokens.labels(tier, kind, "prompt").inc(used.prompt_tokens, exemplar)
            self.tokens.labels(tier, kind, "completion").inc(used.completion_tokens, exemplar)

    def _add_contract_metrics(self, r: CollectorRegistry) -> None:
        self.contract_requests = Counter(
            "ttc_contract_requests",
            "Requests with a compute contract, by what stopped them (none, budget, deadline) "
            "and outcome (ok, or the HTTP status: 400 contract_too_small, 504, 499).",
            ["stop_reason", "status"],
            registry=r,
        )
        self.contract_tokens = Counter(
            "ttc_contract_tokens",
            "Tokens of requests with ttc.max_total_tokens: what their contracts allowed "
            "(allowed) and what they used (used), every ending.",
            ["kind"],
            registry=r,
        )

    def contract(self, meter: MeteredBackend | None, status: str) -> None:
        """A settled request's compute contract, if it had one (``status`` as in requests)."""
        contract = meter.contract if meter is not None else None
        if contract is None:
            return
        self.contract_requests.labels(contract.stop_reason or "none", status).inc()
        allowed = contract.contract.max_total_tokens
        if allowed is not None:
            self.contract_tokens.labels("allowed").inc(allowed)
            self.contract_tokens.labels("used").inc(contract.report()["used_tokens"])


class PoolCollector(Collector):
    """Worker health, breaker state, load, in-flight calls, retries, failures, ejections and
    upstream latency, read from the pool at scrape time."""

    def __init__(self, pool: WorkerPool) -> None:
        self._pool = pool

    def collect(self) -> Iterator[Metric]:
        labels = ["tier", "worker"]
        healthy = GaugeMetricFamily(
            "ttc_worker_healthy", "1 if the worker passes health checks.", labels=labels
        )
        state = GaugeMetricFamily(
            "ttc_worker_breaker_state",
            "1 for the worker's circuit breaker state (closed, open, half_open).",
            labels=[*labels, "state"],
        )
        in_flight = GaugeMetricFamily(
            "ttc_worker_in_flight", "Gateway requests in flight per worker.", labels=labels
        )
        requests = CounterMetricFamily(
            "ttc_worker_requests", "Calls sent to a worker, retries included.", labels=labels
        )
        failures = CounterMetricFamily(
            "ttc_worker_failures", "Calls to a worker that failed.", labels=labels
        )
        ejections = CounterMetricFamily(
            "ttc_worker_ejections", "Times the worker's circuit breaker opened.", labels=labels
        )
        latency = HistogramMetricFamily(
            "ttc_worker_upstream_duration_seconds",
            "Duration of successful upstream calls (whole stream for streams).",
            labels=labels,
        )
        retries = CounterMetricFamily(
            "ttc_upstream_retries", "Calls retried on another worker.", labels=["tier"]
        )
        resumed = CounterMetricFamily(
            "ttc_stream_resumes",
            "Streams continued on another worker after theirs failed mid-stream.",
            labels=["tier"],
        )
        load = _LoadFamilies()
        for tier, workers in self._pool.workers.items():
            for w in workers:
                key = [tier, w.url]
                healthy.add_metric(key, 1.0 if w.healthy else 0.0)
                for name in BreakerState:
                    state.add_metric([*key, name.value], float(w.breaker.state is name))
                in_flight.add_metric(key, float(w.in_flight))
                requests.add_metric(key, w.requests)
                failures.add_metric(key, self._pool.counters.failures.get(w.url, 0))
                ejections.add_metric(key, w.breaker.ejections)
                latency.add_metric(key, w.latency.cumulative(), w.latency.total)
                load.add(key, self._pool.signals.fresh(w.url))
            retries.add_metric([tier], self._pool.counters.retries.get(tier, 0))
            resumed.add_metric([tier], self._pool.counters.resumed.get(tier, 0))
        yield from (healthy, state, in_flight, requests, failures, ejections, latency, retries)
        yield resumed
        yield from load.families()


class _LoadFamilies:
    """vLLM's load as the pool last scraped it; ``known`` is 0 when that scrape is stale."""

    def __init__(self) -> None:
        labels = ["tier", "worker"]
        self.known = GaugeMetricFamily(
            "ttc_worker_load_known", "1 if the worker's scraped load is fresh.", labels=labels
        )
        self.queue = GaugeMetricFamily(
            "ttc_worker_queue",
            "Requests the worker reports, by state (running, waiting).",
            labels=[*labels, "state"],
        )
        self.kv = GaugeMetricFamily(
            "ttc_worker_kv_cache_usage", "Fraction of the worker's KV cache in use.", labels=labels
        )

    def add(self, key: list[str], signal: WorkerLoad | None) -> None:
        self.known.add_metric(key, 0.0 if signal is None else 1.0)
        if signal is None:
            return
        self.queue.add_metric([*key, "running"], signal.running)
        self.queue.add_metric([*key, "waiting"], signal.waiting)
        if signal.kv_usage is not None:
            self.kv.add_metric(key, signal.kv_usage)

    def families(self) -> tuple[Metric, ...]:
        return (self.known, self.queue, self.kv)
