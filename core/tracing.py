"""What each upstream call is for, and its span when tracing is on.

Policies and the router name the purpose of the calls they make with ``subcall(kind)``
(``probe``, ``judge``, ``draft``, ``escalation``, ``route_probe``); a call made outside any is a
``sample``. The kind rides in a context variable: it crosses ``await``, follows a call into the
tasks it starts, and leaves the ``Backend`` signature alone. An inner ``subcall`` wins (a probe
inside an escalated stage is a ``probe``). Set it around the *call*, never across a ``yield``.

``CallTracer`` exists only when tracing is on (``server.tracing``); the pool then opens one span
per upstream attempt, ``ttc.upstream <kind>`` (kind CLIENT), as a child of the span current
where the call starts (the request's), and sends the W3C ``traceparent`` that names it to the
worker. Without a tracer the pool does none of this: no span, no header, no kind lookup.

An ``UpstreamSpan`` ends exactly once: with the call's usage (``ttc.tokens.*``), with its error
(status ERROR), or with ``ttc.cancelled=true`` when the call was cancelled (a client gone, a
deadline, an early stop) or its stream was closed before it ended (tokens so far recorded).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Iterator
from contextvars import ContextVar
from typing import TYPE_CHECKING, TypeVar

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import AttributeValue

from core.backend import close_now
from core.usage import TokenUsage

if TYPE_CHECKING:
    from core.backend import Completion, Delta
    from core.metering import StreamProgress

T = TypeVar("T")
SAMPLE = "sample"
_KIND: ContextVar[str] = ContextVar("ttc_subcall_kind", default=SAMPLE)
PROPAGATOR = TraceContextTextMapPropagator()  # W3C traceparent / tracestate, nothing else


@contextlib.contextmanager
def subcall(kind: str) -> Iterator[None]:
    """Upstream calls made inside are of ``kind`` (probe, judge, draft, escalation, ...)."""
    token = _KIND.set(kind)
    try:
        yield
    finally:
        _KIND.reset(token)


def current_kind() -> str:
    return _KIND.get()


async def streamed_as(kind: str, events: AsyncIterator[T]) -> AsyncGenerator[T, None]:
    """``events`` (a policy's stream) with the calls of each step made as ``kind``: a stream's
    steps may run in different tasks, so a ``subcall`` cannot span its ``yield``s."""
    try:
        while True:
            with subcall(kind):
                try:
                    event = await anext(events)
                except StopAsyncIteration:
                    return
            yield event
    finally:
        await close_now(events)


def current_trace_id() -> str | None:
    """The trace id (32 hex digits) of the span current here, if one is recorded."""
    context = trace.get_current_span().get_span_context()
    return trace.format_trace_id(context.trace_id) if context.trace_flags.sampled else None


def usage_attributes(usage: TokenUsage) -> dict[str, AttributeValue]:
    return {
        "ttc.tokens.prompt": usage.prompt_tokens,
        "ttc.tokens.completion": usage.completion_tokens,
        "ttc.tokens.reasoning": usage.reasoning_tokens,
    }


class UpstreamSpan:
    """The span of one upstream attempt, and the headers that carry it to the worker."""

    def __init__(self, span: trace.Span) -> None:
        self.span = span
        self.headers: dict[str, str] = {}
        PROPAGATOR.inject(self.headers, context=trace.set_span_in_context(span))
        self._ended = False

    def end(self, usage: TokenUsage | None = None, error: BaseException | None = None) -> None:
        """End the span (once; later calls do nothing). ``error`` is how the call ended if it
        did not finish: a cancellation or a closed stream marks it cancelled, anything else
        failed. ``usage``: what the call spent, if known (a cancelled chat call knows nothing)."""
        if self._ended:
            return
        self._ended = True
        span = self.span
        cancelled = isinstance(error, asyncio.CancelledError | GeneratorExit)
        if span.is_recording():
            attributes = usage_attributes(usage) if usage is not None else {}
            attributes["ttc.cancelled"] = cancelled
            if error is not None and not cancelled:
                attributes["error.type"] = type(error).__name__
                span.set_status(Status(StatusCode.ERROR, str(error)))
            span.set_attributes(attributes)
        span.end()


class CallTracer:
    """Opens the span of each upstream attempt (see the module docstring)."""

    def __init__(self, tracer: trace.Tracer) -> None:
        self._tracer = tracer

    def start(self, tier: str, worker: str, *, stream: bool, attempt: int) -> UpstreamSpan:
        kind = current_kind()
        attributes: dict[str, AttributeValue] = {
            "ttc.kind": kind,
            "ttc.tier": tier,
            "ttc.worker": worker,
            "ttc.stream": stream,
            "ttc.attempt": attempt,
        }
        span = self._tracer.start_span(
            f"ttc.upstream {kind}", kind=SpanKind.CLIENT, attributes=attributes
        )
        return UpstreamSpan(span)


async def traced_call(span: UpstreamSpan, call: Awaitable[Completion]) -> Completion:
    """``call``, its span ended with its usage or with how it failed or was cancelled."""
    try:
        completion = await call
    except BaseException as exc:
        span.end(error=exc)
        raise
    span.end(completion.usage)
    return completion


async def traced_stream(
    span: UpstreamSpan, deltas: AsyncIterator[Delta], seen: StreamProgress
) -> AsyncGenerator[Delta, None]:
    """``deltas``, the span ended when the stream ends, fails or is closed early (cancelled),
    with the usage ``seen`` so far."""
    try:
        async for delta in deltas:
            yield delta
    except BaseException as exc:
        span.end(seen.usage_so_far(), exc)
        raise
    finally:
        await close_now(deltas)  # closing this closes the call (its connection)
    span.end(seen.usage_so_far())
