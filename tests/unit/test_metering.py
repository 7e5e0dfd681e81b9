"""``MeteredBackend``: what one request spent upstream, however its calls ended."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from core.backend import Choice, Completion, Delta
from core.contract import ComputeContract, ContractMeter, prompt_estimate
from core.errors import UpstreamError
from core.metering import MeteredBackend
from core.usage import TokenUsage


class Scripted:
    """A backend whose stream sends ``deltas`` then, if set, raises ``fail``."""

    def __init__(self, deltas: list[Delta], fail: Exception | None = None) -> None:
        self.deltas, self.fail, self.closed = deltas, fail, False

    async def chat(
        self, tier: str, body: dict[str, Any], *, affinity: str | None = None
    ) -> Completion:
        return Completion((Choice(0, "Paris", "stop"),), TokenUsage(12, 3), "m")

    async def stream_chat(
        self, tier: str, body: dict[str, Any], *, affinity: str | None = None
    ) -> AsyncIterator[Delta]:
        try:
            for delta in self.deltas:
                yield delta
            if self.fail is not None:
                raise self.fail
        finally:
            self.closed = True


WORDS = [Delta(text=w) for w in ("Once", " upon", " a", " time")]


async def test_finished_calls_add_the_usage_the_worker_reported() -> None:
    meter = MeteredBackend(Scripted([*WORDS, Delta(usage=TokenUsage(9, 4), finish_reason="stop")]))
    await meter.chat("t", {})
    await meter.chat("t", {})
    assert [d.text async for d in meter.stream_chat("t", {})][:4] == [
        "Once",
        " upon",
        " a",
        " time",
    ]
    assert meter.spent == TokenUsage(12 + 12 + 9, 3 + 3 + 4)


async def test_a_stream_closed_by_its_consumer_is_counted_and_closed_upstream_at_once() -> None:
    inner = Scripted(WORDS)
    meter = MeteredBackend(inner)
    body = {"messages": [{"role": "user", "content": "Tell me a story. " * 100}]}
    stream = meter.stream_chat("t", body)
    assert [await anext(stream), await anext(stream)] == WORDS[:2]
    await stream.aclose()  # the client left: no usage chunk ever came
    assert inner.closed
    # one token per text delta, and the prompt the worker took in (estimated: never reported)
    assert meter.spent == TokenUsage(prompt_estimate(body), 2)
    assert meter.spent.prompt_tokens >= 400  # 1,700 characters: not a token less than that


async def test_a_call_cancelled_in_flight_is_billed_its_prompt() -> None:
    """A probe no longer needed, a round cut by the deadline: the worker took the prompt in
    before vLLM aborted it (and reports nothing)."""

    class Slow(Scripted):
        async def chat(
            self, tier: str, body: dict[str, Any], *, affinity: str | None = None
        ) -> Completion:
            await asyncio.sleep(10)
            raise AssertionError("unreachable")

    meter = MeteredBackend(Slow(WORDS))
    body = {"messages": [{"role": "user", "content": "What is 7 + 5?"}]}
    call = asyncio.ensure_future(meter.chat("t", body))
    await asyncio.sleep(0.01)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert meter.spent == TokenUsage(prompt_estimate(body), 0)
    assert meter.by_tier == {"t": meter.spent}


async def test_a_failed_stream_keeps_the_latest_usage_it_sent() -> None:
    running = [Delta(text="a", usage=TokenUsage(30, 1)), Delta(text="b", usage=TokenUsage(30, 2))]
    meter = MeteredBackend(Scripted(running, fail=UpstreamError("worker died")))
    got: list[str] = []
    with pytest.raises(UpstreamError):
        async for delta in meter.stream_chat("t", {}):
            got.append(delta.text)
    assert got == ["a", "b"] and meter.spent == TokenUsage(30, 2)


class SlowToClose(Scripted):
    """A stream whose closing awaits (as closing a worker's connection does)."""

    async def stream_chat(
        self, tier: str, body: dict[str, Any], *, affinity: str | None = None
    ) -> AsyncIterator[Delta]:
        try:
            for delta in self.deltas:
                yield delta
            await asyncio.Event().wait()  # the worker is still generating
        finally:
            await asyncio.sleep(0.05)
            self.closed = True


@pytest.mark.parametrize("contract", [None, ComputeContract(max_total_tokens=10_000)])
async def test_a_cancellation_while_the_upstream_closes_loses_no_spend(
    contract: ComputeContract | None,
) -> None:
    """The client leaves while the stream is torn down: the cancellation lands in the close
    of the upstream connection, and what the worker streamed is still counted."""
    meter = MeteredBackend(SlowToClose(WORDS), ContractMeter(contract) if contract else None)
    stream = meter.stream_chat("t", {"messages": [{"role": "user", "content": "Hi"}]})
    got = [await anext(stream), await anext(stream)]

    async def close() -> None:
        await stream.aclose()

    closing = asyncio.ensure_future(close())
    await asyncio.sleep(0.01)  # inside the upstream's close
    closing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await closing
    assert got == WORDS[:2] and meter.spent.completion_tokens == 2
