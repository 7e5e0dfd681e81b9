"""``ChatService``: the request's deadline bounds routing and the policy, streamed or not."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from policies.base import Decision, GenRequest
from policies.errors import DeadlineExceeded
from policies.params import SingleParams
from server.metrics import Metrics
from server.service import ChatService


class ProbeThatNeverAnswers:
    """A router whose probe of the small tier hangs (a stuck worker, a lost node)."""

    async def route(self, req: GenRequest, backend: Any) -> Any:
        await asyncio.Event().wait()


async def test_a_hanging_probe_ends_at_the_request_deadline_with_a_504() -> None:
    service = ChatService(ProbeThatNeverAnswers(), backend=None, metrics=Metrics())  # type: ignore[arg-type]
    req = GenRequest(messages=({"role": "user", "content": "hi"},),
                     deadline=time.monotonic() + 0.2)  # fmt: skip
    with pytest.raises(DeadlineExceeded) as info:
        await asyncio.wait_for(service.plan(req, service.meter()), 5.0)
    assert info.value.status == 504


class PolicyThatNeverAnswers:
    async def run(self, req: GenRequest, plan: Decision, backend: Any) -> Any:
        await asyncio.Event().wait()

    async def stream(self, req: GenRequest, plan: Decision, backend: Any) -> Any:
        yield "first"
        await asyncio.Event().wait()


def soon(seconds: float = 0.2) -> GenRequest:
    return GenRequest(messages=({"role": "user", "content": "hi"},),
                      deadline=time.monotonic() + seconds)  # fmt: skip


async def test_a_policy_past_the_deadline_is_a_504_counted_once() -> None:
    metrics = Metrics()
    service = ChatService(ProbeThatNeverAnswers(), backend=None, metrics=metrics)  # type: ignore[arg-type]
    plan = Decision(tier="small", policy=SingleParams())
    with pytest.raises(DeadlineExceeded) as info:
        await asyncio.wait_for(service.complete(soon(), plan, PolicyThatNeverAnswers(), None), 5.0)  # type: ignore[arg-type]
    assert info.value.status == 504
    assert metrics.requests.labels("small", "single", "504")._value.get() == 1


async def test_a_stream_past_the_deadline_ends_with_a_504() -> None:
    service = ChatService(ProbeThatNeverAnswers(), backend=None, metrics=Metrics())  # type: ignore[arg-type]
    plan = Decision(tier="small", policy=SingleParams())
    events = service.stream(soon(), plan, PolicyThatNeverAnswers(), None)  # type: ignore[arg-type]
    assert await anext(events) == "first"  # type: ignore[comparison-overlap]
    with pytest.raises(DeadlineExceeded):
        await asyncio.wait_for(anext(events), 5.0)
