"""What happens around a routed request: probe billing, trace, shared statistics, shadow.

``Router.route`` returns a ``Routing`` (the decision plus what led to it); ``Router.wrap``
wraps the chosen policy in a ``RoutedPolicy`` which, when the policy's result is ready and
before the client sees it, adds the probe's tokens to the result's usage ledger (kind
"probe"), then hands the result to the ``Recorder``: a trace record to the JSONL sink, one
count to the shared ``StatsSource`` (no I/O: the store flushes in the background, so a slow
store never delays a response), and possibly a shadow run.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from policies.backend import Backend, Delta, TokenUsage
from policies.base import Decision, GenRequest, Policy, PolicyResult
from router.config import RouterConfig
from router.counters import RouterCounters
from router.features import Features
from router.shadow import Decider, ShadowRunner
from router.stats import StatsSource
from router.traces import TraceSink, request_record


@dataclass(frozen=True)
class Routing:
    decision: Decision
    features: Features
    scores: Mapping[str, float]  # predictor name (and "probe") -> difficulty
    probe_usage: TokenUsage | None
    probe_tier: str
    decided_at: float


class Recorder:
    def __init__(
        self,
        config: RouterConfig,
        stats: StatsSource,
        counters: RouterCounters,
        shadow_decider: Decider | None,
    ) -> None:
        self._traces = config.traces
        self._stats = stats
        path = config.traces.path
        self.sink = TraceSink(Path(path), config.traces.buffer) if path else None
        self.shadow = (
            ShadowRunner(shadow_decider, config.shadow, counters, self._emit)
            if shadow_decider is not None
            else None
        )

    def _emit(self, record: dict[str, Any]) -> None:
        if self.sink is not None:
            self.sink.emit(record)

    def bill_probe(self, routing: Routing, result: PolicyResult) -> None:
        if routing.probe_usage is not None:
            result.usage.add("probe", routing.probe_tier, routing.probe_usage)

    def observe(
        self,
        req: GenRequest,
        plan: Decision,
        routing: Routing,
        result: PolicyResult,
        latency_s: float,
        backend: Backend,
    ) -> None:
        """Trace, statistics and shadow for one finished request; never blocks."""
        if self.sink is not None:
            self.sink.emit(
                request_record(
                    req=req,
                    plan=plan,
                    result=result,
                    features=routing.features.as_dict(),
                    scores=routing.scores,
                    latency_s=latency_s,
                    config=self._traces,
                )
            )
        self._stats.record(plan, result)
        if self.shadow is not None:
            self.shadow.maybe_start(req, plan, result, backend)

    async def aclose(self) -> None:
        if self.shadow is not None:
            await self.shadow.aclose()
        if self.sink is not None:
            await asyncio.to_thread(self.sink.close)


class RoutedPolicy:
    """A policy plus the router's bookkeeping; behaves exactly like the policy it wraps."""

    name: ClassVar[str] = "routed"

    def __init__(self, inner: Policy, routing: Routing, recorder: Recorder) -> None:
        self.inner = inner
        self.routing = routing
        self._recorder = recorder

    async def run(self, req: GenRequest, plan: Decision, backend: Backend) -> PolicyResult:
        started = time.monotonic()
        result = await self.inner.run(req, plan, backend)
        self._finish(req, plan, result, started, backend)
        return result

    async def stream(
        self, req: GenRequest, plan: Decision, backend: Backend
    ) -> AsyncIterator[Delta | PolicyResult]:
        started = time.monotonic()
        events = self.inner.stream(req, plan, backend)
        try:
            async for event in events:
                if isinstance(event, PolicyResult):
                    self._finish(req, plan, event, started, backend)
                yield event
        finally:
            with contextlib.suppress(AttributeError):
                await events.aclose()  # type: ignore[attr-defined]

    def _finish(
        self,
        req: GenRequest,
        plan: Decision,
        result: PolicyResult,
        started: float,
        backend: Backend,
    ) -> None:
        self._recorder.bill_probe(self.routing, result)
        latency = time.monotonic() - started
        self._recorder.observe(req, plan, self.routing, result, latency, backend)
