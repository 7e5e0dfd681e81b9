"""What the pool knows about a stream in progress: has output started, what did it cost.

Before the first *output* (text, a finish reason, a tool-call or reasoning delta) nothing has
reached the caller, so a failure is retried on another worker. vLLM's first chunk only carries
the assistant role; it is held back with any other empty delta (and usage-only deltas) until
output starts, so a worker that dies right after it is still retried. Once output has started,
a failure is ``StreamInterrupted``, unless the stream can be continued on another worker
(``workers.resume``).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Callable

from core.backend import Delta, close_now
from core.errors import StreamInterrupted, TtcError
from core.metering import StreamProgress
from core.usage import TokenUsage


def interrupted(
    seen: StreamProgress, cause: TtcError, before: TokenUsage | None = None
) -> StreamInterrupted:
    """The error for a stream that failed after output started, billed what it cost so far
    (``before``: what the calls it continued cost, ``workers.resume``)."""
    usage = seen.usage_so_far() + (before or TokenUsage())
    if seen.usage is not None:
        so_far = f"{usage.prompt_tokens} prompt and {usage.completion_tokens} completion tokens"
    else:  # the gateway bills the prompt's estimate (core.metering)
        so_far = f"about {usage.completion_tokens} completion tokens and the prompt (unreported)"
    return StreamInterrupted(
        f"the worker failed mid-stream ({cause.message}); usage so far: {so_far}", usage=usage
    )


def is_output(delta: Delta) -> bool:
    if delta.text or delta.finish_reason:
        return True
    inner = delta.raw.get("delta") or {}
    return any(value for name, value in inner.items() if name not in ("role", "content"))


async def after_output(
    upstream: AsyncIterator[Delta], seen: StreamProgress, on_output: Callable[[], None]
) -> AsyncGenerator[Delta, None]:
    """Pass ``upstream`` through, holding back leading non-output deltas until output starts.

    ``on_output`` runs once, at the first output (the worker has shown it works). Closing this
    generator closes ``upstream``.
    """
    held: list[Delta] = []
    try:
        async for delta in upstream:
            seen.note(delta)
            if not seen.started:
                if not is_output(delta):
                    held.append(delta)
                    continue
                seen.started = True
                on_output()
                for early in held:
                    yield early
                held.clear()
            yield delta
        for early in held:  # a stream that ended with no output at all
            yield early
    finally:
        await close_now(upstream)
