"""Prometheus metrics, all prefixed ``ttc_`` (never ``vllm:``), in a registry per app.

Request-level metrics are recorded from each finished request's ``PolicyResult`` and
``Decision``; pool and worker state is read from the pool at scrape time by a collector, so
``workers`` and ``policies`` need no Prometheus themselves.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from policies.base import Decision, UsageLedger
from workers.pool import WorkerPool

_LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
_SAMPLES = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64)
_TOKENS = (16, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 65536)


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

    def watch_pool(self, pool: WorkerPool) -> None:
        self.registry.register(PoolCollector(pool))

    def record(self, plan: Decision, usage: UsageLedger, report: Mapping[str, Any]) -> None:
        policy = plan.policy.name
        for kind, tier, used in usage.items():
            self.tokens.labels(tier, kind, "prompt").inc(used.prompt_tokens)
            self.tokens.labels(tier, kind, "completion").inc(used.completion_tokens)
        self.tokens_per_request.labels(policy).observe(usage.total.completion_tokens)
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
        self.decisions.labels(plan.band or "none", plan.tier, policy).inc()
        if plan.difficulty is not None:
            self.difficulty.observe(plan.difficulty)


class PoolCollector(Collector):
    """Worker health, in-flight requests, retries and failures, read from the pool."""

    def __init__(self, pool: WorkerPool) -> None:
        self._pool = pool

    def collect(self) -> Iterator[Metric]:
        healthy = GaugeMetricFamily(
            "ttc_worker_healthy", "1 if the worker passes health checks.", labels=["tier", "worker"]
        )
        in_flight = GaugeMetricFamily(
            "ttc_worker_in_flight",
            "Gateway requests in flight per worker.",
            labels=["tier", "worker"],
        )
        failures = CounterMetricFamily(
            "ttc_worker_failures",
            "Calls to a worker that failed before any byte.",
            labels=["tier", "worker"],
        )
        retries = CounterMetricFamily(
            "ttc_upstream_retries", "Calls retried on another worker.", labels=["tier"]
        )
        for tier, workers in self._pool.workers.items():
            for w in workers:
                healthy.add_metric([tier, w.url], 1.0 if w.healthy else 0.0)
                in_flight.add_metric([tier, w.url], float(w.in_flight))
                failures.add_metric([tier, w.url], self._pool.counters.failures.get(w.url, 0))
            retries.add_metric([tier], self._pool.counters.retries.get(tier, 0))
        yield from (healthy, in_flight, failures, retries)
