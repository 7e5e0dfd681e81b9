"""OpenTelemetry traces: the provider the ``tracing:`` config asks for, and each request's span.

Off by default. Then ``Tracing.build`` returns None and nothing here runs: the lifecycle opens
no span, the pool opens none and sends no ``traceparent`` (``core.tracing``).

On, each request gets one span, ``ttc.request <endpoint>`` (kind SERVER):

- started by ``RequestLifecycle.handle`` on arrival, as a child of the caller's W3C
  ``traceparent`` when it sent a valid one (same trace id; its sampled flag decides), else the
  root of a new trace recorded with probability ``sample_ratio``;
- current while the request runs (``active``: routing, the policy, and each step of a stream,
  ``traced_events``), so every upstream call opens its ``ttc.upstream <kind>`` span under it;
- ended by the request's one settlement (``server.settlement``), however it ends, with the
  router's decision (tier, policy, band, difficulty), the outcome (``ttc.status``: ok, an
  HTTP status, 499 for a client gone), the tokens spent (the result's usage, else what the
  metered backend saw spent upstream) and the compute contract's stop if it stopped it.

Spans leave in batches over OTLP/HTTP (``BatchSpanProcessor``: a background thread, never the
event loop); ``shutdown`` flushes what is queued when the app stops.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, Iterator, Mapping
from typing import TYPE_CHECKING, TypeVar

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from core.errors import TtcError, clipped
from core.result import PolicyResult
from core.tracing import PROPAGATOR, CallTracer, usage_attributes
from server.config import TracingConfig

if TYPE_CHECKING:
    from server.settlement import Settlement

T = TypeVar("T")


class Tracing:
    """The tracer provider of one app, and the tracers the lifecycle and the pool use."""

    def __init__(self, provider: TracerProvider) -> None:
        self.provider = provider
        self.tracer = provider.get_tracer("ttc-gateway")
        self.calls = CallTracer(self.tracer)

    @classmethod
    def build(cls, config: TracingConfig, exporter: SpanExporter | None = None) -> Tracing | None:
        """None when tracing is off; ``exporter`` replaces OTLP (tests pass an in-memory one,
        which then gets each span as it ends)."""
        if not config.enabled:
            return None
        provider = TracerProvider(
            resource=Resource.create({"service.name": config.service_name}),
            sampler=ParentBased(TraceIdRatioBased(config.sample_ratio)),
        )
        if exporter is None:
            otlp = OTLPSpanExporter(
                endpoint=config.endpoint,
                headers=config.headers or None,
                timeout=config.export_timeout_s,
            )
            millis = config.export_timeout_s * 1000
            provider.add_span_processor(BatchSpanProcessor(otlp, export_timeout_millis=millis))
        else:
            provider.add_span_processor(SimpleSpanProcessor(exporter))
        return cls(provider)

    def request(self, headers: Mapping[str, str], endpoint: str, path: str) -> RequestTrace:
        """The span of a request that just arrived with ``headers``."""
        parent = PROPAGATOR.extract(headers, context=otel_context.Context())
        attributes = {"ttc.endpoint": endpoint, "http.request.method": "POST", "url.path": path}
        span = self.tracer.start_span(
            f"ttc.request {endpoint}", parent, kind=SpanKind.SERVER, attributes=attributes
        )
        return RequestTrace(span)

    def shutdown(self) -> None:
        """Export what is queued and stop (blocking: run it in a thread from async code)."""
        self.provider.shutdown()


class RequestTrace:
    """One request's span; ``end`` (from its settlement) is the only place it ends."""

    def __init__(self, span: trace.Span) -> None:
        self.span = span
        self._context = trace.set_span_in_context(span)
        self._attributes: dict[str, AttributeValue] = {}  # set at once when the span ends
        self._answered = False  # the result's usage is in the attributes
        self._ended = False

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        """The request's span is the current one inside (enter and leave in one task step)."""
        token = otel_context.attach(self._context)
        try:
            yield
        finally:
            otel_context.detach(token)

    def exemplar(self) -> dict[str, str] | None:
        """``{"trace_id": ...}`` for Prometheus exemplars, if this trace is recorded."""
        context = self.span.get_span_context()
        if not context.trace_flags.sampled:
            return None
        return {"trace_id": trace.format_trace_id(context.trace_id)}

    def finished(self, result: PolicyResult) -> dict[str, str] | None:
        """What the policy reported (before ``end``); returns the exemplar."""
        report, attributes = result.report, self._attributes
        attributes.update(usage_attributes(result.usage.total))
        self._answered = True
        for name in ("samples", "early_stopped", "stop_reason", "confidence", "cache"):
            value = report.get(name)
            if isinstance(value, bool | int | float | str):
                attributes[f"ttc.{name}"] = value
        return self.exemplar()

    def failed(self, error: TtcError) -> None:
        self._attributes["error.type"] = error.code or error.error_type
        if error.status >= 500:  # a 4xx is the client's: the server span is not in error
            self.span.set_status(Status(StatusCode.ERROR, error.message))

    def end(self, life: Settlement, status: str) -> None:
        """End the span (once) with what ``life`` knows: decision, outcome, spend, contract."""
        if self._ended:
            return
        self._ended = True
        if self.span.is_recording():  # an unsampled request costs no attributes
            self.span.set_attributes(self._ending(life, status))
        self.span.end()

    def _ending(self, life: Settlement, status: str) -> dict[str, AttributeValue]:
        attributes = self._attributes
        attributes["ttc.status"] = status
        attributes["http.response.status_code"] = 200 if status == "ok" else int(status)
        attributes["ttc.stream"] = life.stream
        if life.req is not None:
            attributes["ttc.request_id"] = life.req.request_id
            attributes["ttc.model"] = clipped(life.req.model)  # the client's: maybe huge
        decision = life.decision
        if decision is not None:
            attributes["ttc.tier"] = decision.tier
            attributes["ttc.policy"] = decision.params.name
            attributes["ttc.band"] = decision.band or "none"
            if decision.difficulty is not None:
                attributes["ttc.difficulty"] = round(decision.difficulty, 4)
        meter = life.meter
        if meter is not None and not self._answered:
            attributes.update(usage_attributes(meter.spent))  # no result: spent upstream
        if meter is not None and meter.contract is not None:
            attributes["ttc.contract.used_tokens"] = meter.contract.report()["used_tokens"]
            if meter.contract.stop_reason is not None:
                attributes["ttc.contract.stop_reason"] = meter.contract.stop_reason
        return attributes


def traced_events(
    trace_: RequestTrace | None, events: AsyncGenerator[T, None]
) -> AsyncGenerator[T, None]:
    """``events`` with the request's span current in each step (a stream's steps run in tasks
    of their own, after ``handle`` returned); ``events`` itself when not traced."""
    return events if trace_ is None else _within(trace_, events)


async def _within(trace_: RequestTrace, events: AsyncGenerator[T, None]) -> AsyncGenerator[T, None]:
    try:
        while True:
            with trace_.active():
                try:
                    event = await anext(events)
                except StopAsyncIteration:
                    return
            yield event
    finally:
        with trace_.active():
            await events.aclose()
