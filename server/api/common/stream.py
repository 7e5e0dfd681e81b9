"""Server-sent events every streaming API writes: the frame, the keep-alive, ``[DONE]``.

``with_keepalive`` turns a policy's events into events or ``None`` (nothing for a while: send a
keep-alive comment), so proxies and clients do not time out while a policy is busy.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from server.endpoint import Event

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
