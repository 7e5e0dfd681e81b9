"""Shadow evaluation: run an alternative routing decision in the background, compare.

For a ``shadow.fraction`` of finished requests, an alternative router (``shadow.predictor``
and ``shadow.bands`` in place of the live ones; no probe, no controller) decides again, and
if it would have chosen differently its policy runs against the same backend. The client never
sees it. Both answers are reduced to their extracted answer and compared; the counters and a
``kind: "shadow"`` trace record say how often the two configs agree and what each spent.
At most ``shadow.max_concurrent`` shadows run at once; beyond that they are dropped, so a
shadow can never pile up work behind live traffic.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any, Protocol

from core.backend import Backend
from core.errors import TtcError
from core.request import Decision, GenRequest
from core.result import PolicyResult
from core.tracing import subcall
from policies import registry
from policies.answers import cluster_key, extract_answer
from router.config import ShadowConfig
from router.counters import RouterCounters

log = logging.getLogger("ttc.router")


class Decider(Protocol):
    def decide(self, req: GenRequest) -> Decision: ...


def answer_key(text: str) -> str:
    """What two answers must share to agree: the extracted answer, else the normalised text."""
    return extract_answer(text) or cluster_key(text)


def same_plan(a: Decision, b: Decision) -> bool:
    return a.tier == b.tier and a.params == b.params


class ShadowRunner:
    def __init__(
        self,
        decider: Decider,
        config: ShadowConfig,
        counters: RouterCounters,
        emit: Callable[[dict[str, Any]], None],
        rng: random.Random | None = None,
    ) -> None:
        self._decider = decider
        self._config = config
        self._counters = counters
        self._emit = emit
        self._rng = rng or random.Random()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def running(self) -> int:
        return len(self._tasks)

    def maybe_start(
        self, req: GenRequest, decision: Decision, result: PolicyResult, backend: Backend
    ) -> asyncio.Task[None] | None:
        """Start a shadow for this finished request if the dice and the limits allow."""
        if self._config.fraction <= 0 or self._rng.random() >= self._config.fraction:
            return None
        try:
            alternative = self._decider.decide(req)
        except TtcError:
            self._counters.shadow["failed"] += 1
            return None
        if same_plan(decision, alternative):
            self._counters.shadow["same_decision"] += 1
            return None
        if len(self._tasks) >= self._config.max_concurrent:
            self._counters.shadow["dropped"] += 1
            return None
        task = asyncio.create_task(self._run(req, decision, result, alternative, backend))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _run(
        self,
        req: GenRequest,
        decision: Decision,
        result: PolicyResult,
        alternative: Decision,
        backend: Backend,
    ) -> None:
        started = time.monotonic()
        shadow_req = replace(req, deadline=None)
        try:
            async with asyncio.timeout(self._config.timeout_s):
                policy = registry.build(alternative.params)
                with subcall("shadow"):  # its calls are not the request's samples
                    shadow = await policy.run(shadow_req, alternative, backend)
        except (TtcError, TimeoutError) as exc:
            self._counters.shadow["failed"] += 1
            log.info("shadow of %s failed: %s", req.request_id, exc)
            return
        agree = answer_key(result.message) == answer_key(shadow.message)
        primary_tokens = result.usage.total.completion_tokens
        shadow_tokens = shadow.usage.total.completion_tokens
        self._counters.shadow["agree" if agree else "disagree"] += 1
        self._counters.shadow_tokens["primary"] += primary_tokens
        self._counters.shadow_tokens["shadow"] += shadow_tokens
        self._emit(
            {
                "kind": "shadow",
                "ts": round(time.time(), 3),
                "request_id": req.request_id,
                "primary": {**decision.report(), "completion_tokens": primary_tokens},
                "shadow": {**alternative.report(), "completion_tokens": shadow_tokens},
                "agree": agree,
                "latency_s": round(time.monotonic() - started, 4),
            }
        )

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
