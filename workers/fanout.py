"""A vote on an engine that ignores ``n``: its samples drawn as separate calls.

The llama.cpp server accepts ``n`` and answers one choice; a policy that asked for eight
samples would vote on one. For such an engine (``n`` not in what it serves) the pool sends
``n`` calls of one choice each and merges them: choices numbered in order, usage summed (each
call read the prompt, and each is billed for it). A seed is moved on by one per call, as the
samples of one seeded call differ from one another. On an engine that takes one request at a
time the calls queue for the worker's turn (``workers.gate``); elsewhere they run side by side.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

from core.backend import Choice, Completion, Delta, close_now
from core.usage import TokenUsage


def samples(body: Mapping[str, Any]) -> int:
    n = body.get("n")
    return n if isinstance(n, int) and n > 1 else 1


def bodies(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One body of one choice per sample of ``body``."""
    one = {k: v for k, v in body.items() if k != "n"}
    seed = one.get("seed")
    if not isinstance(seed, int):
        return [dict(one) for _ in range(samples(body))]
    return [{**one, "seed": seed + i} for i in range(samples(body))]


def _renumbered(choice: Choice, index: int) -> Choice:
    return dataclasses.replace(choice, index=index, raw={**choice.raw, "index": index})


async def chat(
    call: Callable[[dict[str, Any]], Awaitable[Completion]], body: Mapping[str, Any]
) -> Completion:
    """``body``'s samples as separate ``call``s, merged into one completion; the first
    failure cancels the calls still running and is raised."""
    tasks = [asyncio.ensure_future(call(b)) for b in bodies(body)]
    try:
        done = await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    choices = tuple(_renumbered(c, i) for i, c in enumerate(c for one in done for c in one.choices))
    usage = sum((one.usage for one in done), TokenUsage())
    return Completion(choices=choices, usage=usage, model=done[0].model)


async def stream(
    open_stream: Callable[[dict[str, Any]], AsyncIterator[Delta]], body: Mapping[str, Any]
) -> AsyncGenerator[Delta, None]:
    """``body``'s samples as separate streams, interleaved as they arrive, each delta numbered
    by its sample; one usage delta at the end sums what the streams reported."""
    queue: asyncio.Queue[tuple[int, Delta | BaseException | None]] = asyncio.Queue()
    streams = [open_stream(b) for b in bodies(body)]
    pumps = [asyncio.create_task(_pump(i, s, queue)) for i, s in enumerate(streams)]
    usage: dict[int, TokenUsage] = {}
    try:
        left = len(pumps)
        while left:
            index, item = await queue.get()
            if item is None:
                left -= 1
            elif isinstance(item, BaseException):
                raise item
            elif item.usage is not None:
                usage[index] = item.usage  # the latest a stream reported is its total
            else:
                yield dataclasses.replace(item, index=index, raw={**item.raw, "index": index})
        if usage:
            yield Delta(usage=sum(usage.values(), TokenUsage()))
    finally:
        for pump in pumps:
            pump.cancel()
        await asyncio.gather(*pumps, return_exceptions=True)


async def _pump(
    index: int,
    deltas: AsyncIterator[Delta],
    queue: asyncio.Queue[tuple[int, Delta | BaseException | None]],
) -> None:
    try:
        async for delta in deltas:
            queue.put_nowait((index, delta))
        queue.put_nowait((index, None))
    except Exception as exc:  # handed to the consumer, which raises it
        queue.put_nowait((index, exc))
    finally:
        await close_now(deltas)
