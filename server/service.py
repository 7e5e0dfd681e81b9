"""Orchestration of one chat request: router -> policy -> backend, metrics at the end."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import replace

from policies import registry
from policies.backend import Backend, close_now
from policies.base import Decision, GenRequest, Policy, PolicyResult
from policies.errors import DeadlineExceeded, TtcError
from policies.metering import MeteredBackend
from policies.params import SingleParams
from router.router import Router
from server.metrics import Metrics
from server.streaming import Event


class ChatService:
    def __init__(self, router: Router, backend: Backend, metrics: Metrics) -> None:
        self.router = router
        self.backend = backend
        self.metrics = metrics

    def meter(self) -> MeteredBackend:
        """A backend for one request that counts what it spends upstream (``plan``, ``complete``
        and ``stream`` take it), so a request that never finishes is still billed."""
        return MeteredBackend(self.backend)

    async def plan(self, req: GenRequest, backend: Backend) -> tuple[Decision, Policy]:
        """The router's decision (maybe after a probe) and its policy, wrapped so the probe's
        tokens, the trace and the shared statistics are recorded when the policy finishes."""
        async with _within_deadline(req, " while routing"):  # a probe counts against it
            routing = await self.router.route(req, backend)
        plan = routing.decision
        if req.needs_single and plan.policy.name != "single":
            reason = f"tools/response_format need one plain sample; {plan.policy.name} skipped"
            plan = replace(plan, policy=SingleParams(), reasons=(*plan.reasons, reason))
        return plan, self.router.wrap(registry.build(plan.policy), routing)

    async def complete(
        self, req: GenRequest, plan: Decision, policy: Policy, backend: Backend
    ) -> PolicyResult:
        started = time.monotonic()
        try:
            async with _within_deadline(req):
                result = await policy.run(req, plan, backend)
        except TtcError as exc:
            self.failed(plan, exc)
            raise
        self.finished(plan, result, started, stream=False)
        return result

    async def stream(
        self, req: GenRequest, plan: Decision, policy: Policy, backend: Backend
    ) -> AsyncIterator[Event]:
        # The deadline is entered anew around each event: the server awaits every event in a
        # task of its own (``with_keepalive``), and a timeout only cancels the task that
        # entered it, so one timeout around the whole stream would guard the first event only.
        events = policy.stream(req, plan, backend)
        deadline = _loop_deadline(req)
        try:
            while True:
                try:
                    async with asyncio.timeout_at(deadline):
                        event = await anext(events)
                except StopAsyncIteration:
                    return
                except TimeoutError as exc:
                    raise DeadlineExceeded("the request exceeded its deadline") from exc
                yield event
        finally:
            await close_now(events)

    def finished(
        self, plan: Decision, result: PolicyResult, started: float, *, stream: bool
    ) -> None:
        m = self.metrics
        m.requests.labels(plan.tier, plan.policy.name, "ok").inc()
        m.latency.labels(plan.tier, plan.policy.name, str(stream).lower()).observe(
            time.monotonic() - started
        )
        m.record(plan, result.usage, result.report)

    def served_from_cache(self, plan: Decision) -> None:
        """A request answered from the response cache: counted, but it spent no tokens."""
        self.metrics.requests.labels(plan.tier, plan.policy.name, "ok").inc()

    def failed(self, plan: Decision | None, exc: TtcError) -> None:
        tier = plan.tier if plan else "none"
        policy = plan.policy.name if plan else "none"
        self.metrics.requests.labels(tier, policy, str(exc.status)).inc()
        self.metrics.errors.labels(str(exc.status), exc.code or exc.error_type).inc()


@contextlib.asynccontextmanager
async def _within_deadline(req: GenRequest, where: str = "") -> AsyncIterator[None]:
    """Run the body under the request's deadline; running past it is ``DeadlineExceeded``."""
    try:
        async with asyncio.timeout_at(_loop_deadline(req)):
            yield
    except TimeoutError as exc:
        raise DeadlineExceeded(f"the request exceeded its deadline{where}") from exc


def _loop_deadline(req: GenRequest) -> float | None:
    """``req.deadline`` is on ``time.monotonic()``, which asyncio's loop clock also uses."""
    if req.deadline is None:
        return None
    loop = asyncio.get_running_loop()
    return loop.time() + (req.deadline - time.monotonic())
