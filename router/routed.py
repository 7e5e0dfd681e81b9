"""What the router keeps of a routed request: ``Routing`` and the ``Recorder``.

``Router.route`` returns a ``Routing`` (the decision plus what led to it). When the policy's
result is ready and before the client sees it, the server's settlement calls
``Routing.bill_probe`` (the probe's tokens join the result's usage ledger, kind "probe") and
``Router.record``, which hands the result to the ``Recorder``: a trace record to the JSONL
sink, one count to the shared ``StatsSource`` (no I/O: the store flushes in the background, so
a slow store never delays a response), and possibly a shadow run. This is the one place a
finished request is recorded.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.backend import Backend
from core.request import Decision, GenRequest
from core.result import PolicyResult
from core.usage import TokenUsage
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

    def bill_probe(self, result: PolicyResult) -> None:
        """Add the probe's tokens to ``result``'s ledger (kind "probe")."""
        if self.probe_usage is not None:
            result.usage.add("probe", self.probe_tier, self.probe_usage)


class Recorder:
    def __init__(
        self,
        config: RouterConfig,
        stats: StatsSource,
        counters: RouterCounters,
        shadow_decider: Decider | None,
        shadow_backend: Backend | None = None,
    ) -> None:
        self._traces = config.traces
        self._shadow_backend = shadow_backend
        self._stats = stats
        path = config.traces.path
        self.sink = TraceSink(Path(path), config.traces.buffer) if path else None
        self.shadow = (
            ShadowRunner(shadow_decider, config.shadow, counters, self._emit)
            if shadow_decider is not None and shadow_backend is not None
            else None
        )

    def _emit(self, record: dict[str, Any]) -> None:
        if self.sink is not None:
            self.sink.emit(record)

    def observe(
        self, req: GenRequest, routing: Routing, result: PolicyResult, latency_s: float
    ) -> None:
        """Trace, statistics and shadow for one finished request; never blocks."""
        decision = routing.decision
        if self.sink is not None:
            self.sink.emit(
                request_record(
                    req=req,
                    decision=decision,
                    result=result,
                    features=routing.features.as_dict(),
                    scores=routing.scores,
                    latency_s=latency_s,
                    config=self._traces,
                )
            )
        self._stats.record(decision, result)
        if self.shadow is not None and self._shadow_backend is not None:
            self.shadow.maybe_start(req, decision, result, self._shadow_backend)

    async def aclose(self) -> None:
        if self.shadow is not None:
            await self.shadow.aclose()
        if self.sink is not None:
            await asyncio.to_thread(self.sink.close)
