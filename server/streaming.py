"""Server-sent events for a policy's stream: chunks, keep-alives, the final ``ttc`` and usage.

The chunk that carries the last ``finish_reason`` is held back until the policy's result
arrives so the ``ttc`` report rides on it; with ``stream_options.include_usage`` a final chunk
with empty ``choices`` carries ``usage`` (as OpenAI sends it). A policy busy for longer than
the keep-alive interval makes the stream send SSE comments, so proxies and clients do not time
out. An error mid-stream ends it with an error event, then ``[DONE]``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from policies.backend import Delta, close_now
from policies.base import Decision, PolicyResult
from policies.errors import TtcError, UpstreamError
from server.errors import error_body
from server.responses import ChunkFactory, ttc_body, usage_body

log = logging.getLogger("ttc.server")

Event = Delta | PolicyResult
KEEPALIVE = b": keep-alive\n\n"
DONE = b"data: [DONE]\n\n"


def sse(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


async def with_keepalive(
    first: asyncio.Future[Event], events: AsyncIterator[Event], interval: float
) -> AsyncIterator[Event | None]:
    """Yield ``first``'s event then the rest; ``None`` whenever ``interval`` passes silently."""
    pending: asyncio.Future[Event] = first
    try:
        while True:
            done, _ = await asyncio.wait({pending}, timeout=interval)
            if not done:
                yield None
                continue
            try:
                event = pending.result()
            except StopAsyncIteration:
                return
            yield event
            pending = asyncio.ensure_future(anext(events))
    finally:
        if not pending.done():  # client gone or error: stop the policy's upstream calls
            pending.cancel()
            await asyncio.wait({pending})


async def sse_body(
    first: asyncio.Future[Event],
    events: AsyncIterator[Event],
    *,
    chunks: ChunkFactory,
    plan: Decision,
    n: int,
    include_usage: bool,
    keepalive_s: float,
    on_first_token: Callable[[], None],
    on_done: Callable[[PolicyResult | None, TtcError | None], None],
) -> AsyncIterator[bytes]:
    held: dict[str, Any] | None = None
    first_token = True
    try:
        yield sse(chunks.role(n))
        async for event in with_keepalive(first, events, keepalive_s):
            if event is None:
                yield KEEPALIVE
            elif isinstance(event, Delta):
                if first_token and event.text:
                    first_token = False
                    on_first_token()
                if held is not None:
                    yield sse(held)
                held = chunks.delta(event)
            else:
                yield _closing(held, chunks, plan, event, include_usage)
                held = None
                on_done(event, None)
        if held is not None:
            yield sse(held)
    except TtcError as exc:
        on_done(None, exc)
        yield (sse(held) if held is not None else b"") + sse(error_body(exc))
    except Exception:
        log.exception("stream failed")
        err = UpstreamError("the stream failed inside the gateway", code="stream_error")
        on_done(None, err)
        yield sse(error_body(err))
    finally:
        await close_now(events)
    yield DONE


def _closing(
    held: dict[str, Any] | None,
    chunks: ChunkFactory,
    plan: Decision,
    result: PolicyResult,
    include_usage: bool,
) -> bytes:
    report = ttc_body(plan, result.report)
    last = dict(held) if held is not None else chunks.chunk([])
    last["ttc"] = report
    out = sse(last)
    if include_usage:
        out += sse(chunks.chunk([], usage=usage_body(result.usage), ttc=report))
    return out
