"""Server-sent events for a policy's stream: chunks, keep-alives, the final ``ttc`` and usage.

``with_keepalive`` turns a policy's events into events or ``None`` (nothing for a while: send a
keep-alive); ``chat_sse`` renders them as chat chunks. A policy's ``Progress`` (a round of
samples done) is a chunk with empty ``choices`` and ``ttc: {"progress": {...}}``, as the usage
chunk has empty ``choices``: the official SDKs parse it. The chunk that carries the last
``finish_reason`` is held back until the policy's result arrives so the ``ttc`` report rides
on it; with ``stream_options.include_usage`` a final chunk
with empty ``choices`` carries ``usage`` (as OpenAI sends it). A policy busy for longer than
the keep-alive interval makes the stream send SSE comments, so proxies and clients do not time
out. An error mid-stream ends it with an error event, then ``[DONE]``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from core.backend import Delta
from core.errors import TtcError
from core.progress import Progress
from core.request import Decision
from core.result import PolicyResult
from server.api.chat.render import ChunkFactory
from server.api.common.render import error_body, ttc_body, usage_body
from server.api.common.stream import DONE, KEEPALIVE, sse
from server.endpoint import Event


async def chat_sse(
    events: AsyncIterator[Event | None],
    chunks: ChunkFactory,
    decision: Decision,
    *,
    include_usage: bool,
) -> AsyncIterator[bytes]:
    """The chat chunks of ``events``; the finish chunk is held back so ``ttc`` rides on it.

    The role chunk announces choice 0; a choice past it (``n`` > 1) gets its role on its first
    delta, so no choice is announced that a policy never sends (a vote returns the distinct
    answers it drew, fewer than ``n`` when fewer were drawn)."""
    held: dict[str, Any] | None = None
    announced = {0}
    try:
        yield sse(chunks.role())
        async for event in events:
            if event is None:
                yield KEEPALIVE
            elif isinstance(event, Progress):
                if held is not None:
                    yield sse(held)
                    held = None
                yield sse(progress_chunk(chunks, event))
            elif isinstance(event, Delta):
                if held is not None:
                    yield sse(held)
                held = chunks.delta(event)
                if event.index not in announced:
                    announced.add(event.index)
                    delta = held["choices"][0]["delta"]
                    held["choices"][0]["delta"] = {"role": "assistant", **delta}
            else:
                yield _closing(held, chunks, decision, event, include_usage)
                held = None
        if held is not None:
            yield sse(held)
    except TtcError as exc:
        yield (sse(held) if held is not None else b"") + sse(error_body(exc))
    yield DONE


def progress_chunk(chunks: ChunkFactory, progress: Progress) -> dict[str, Any]:
    """``ttc.progress`` on an empty delta of choice 0: a client reading ``choices[0]`` of every
    chunk (OpenAI's own quickstart does) reads nothing new, and never an empty list."""
    empty = {"index": 0, "delta": {}, "logprobs": None, "finish_reason": None}
    return chunks.chunk([empty], ttc={"progress": progress.body()})


def _closing(
    held: dict[str, Any] | None,
    chunks: ChunkFactory,
    decision: Decision,
    result: PolicyResult,
    include_usage: bool,
) -> bytes:
    report = ttc_body(decision, result.report)
    last = dict(held) if held is not None else chunks.chunk([])
    last["ttc"] = report
    out = sse(last)
    if include_usage:
        out += sse(chunks.chunk([], usage=usage_body(result.usage, result.report), ttc=report))
    return out
