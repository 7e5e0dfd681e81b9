"""What tracing sends out of the gateway: the ``traceparent`` each worker call carries, and the
spans an OTLP/HTTP collector receives.

A worker's received headers are not observable on vLLM (it reads ``traceparent`` only to parent
its own spans, when started with ``--otlp-traces-endpoint``), and no collector runs here: a tiny
aiohttp server stands in for each, speaking the real protocol (OpenAI JSON; OTLP protobuf,
decoded with ``opentelemetry-proto``) and recording what it got.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import httpx2
import openai
import pytest
from aiohttp import web
from opentelemetry import trace
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from server.app import create_app
from server.config import settings_from_dict
from tests.integration.conftest import free_port
from tests.integration.test_tracing import CALLER_SPAN, CALLER_TRACE, QUESTION, serving, tree

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
PINNED: Any = {"ttc": {"policy": "single"}}
CALLER = {"traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"}


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    spans = InMemorySpanExporter()
    yield spans
    spans.shutdown()


@contextlib.asynccontextmanager
async def listening(routes: dict[tuple[str, str], Handler]) -> AsyncIterator[str]:
    """An aiohttp server on a free port with ``routes`` ((method, path) -> handler)."""
    app = web.Application()
    for (method, path), handler in routes.items():
        app.router.add_route(method, path, handler)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def recording_upstream() -> AsyncIterator[tuple[str, list[dict[str, str]]]]:
    """A stand-in worker serving the tier ``m``: its URL and the headers of each chat call."""
    seen: list[dict[str, str]] = []

    async def chat(request: web.Request) -> web.Response:
        seen.append(dict(request.headers))
        usage = {"prompt_tokens": 3, "completion_tokens": 1}
        choice = {
            "index": 0,
            "message": {"role": "assistant", "content": "Paris"},
            "finish_reason": "stop",
        }
        return web.json_response({"model": "m", "choices": [choice], "usage": usage})

    async def health(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def models(_: web.Request) -> web.Response:
        return web.json_response({"data": [{"id": "m"}]})

    routes: dict[tuple[str, str], Handler] = {
        ("GET", "/health"): health,
        ("GET", "/v1/models"): models,
        ("POST", "/v1/chat/completions"): chat,
    }
    async with listening(routes) as url:
        yield url, seen


def fake_tier_config(url: str, **tracing: Any) -> dict[str, Any]:
    return {
        "tiers": {"m": {"model": "m", "endpoints": [url]}},
        "router": {"probe": {"mode": "never"}},
        "tracing": tracing,
    }


async def test_the_worker_receives_the_traceparent_of_its_call_span(
    exporter: InMemorySpanExporter,
) -> None:
    async with (
        recording_upstream() as (url, seen),
        serving(fake_tier_config(url, enabled=True), exporter) as sdk,
    ):
        await sdk.chat.completions.create(
            model="m", messages=QUESTION, extra_headers=CALLER, extra_body=PINNED
        )
    _, (call,) = tree(exporter)
    (headers,) = seen
    version, trace_id, parent_id, flags = headers["traceparent"].split("-")
    assert (version, trace_id, flags) == ("00", CALLER_TRACE, "01")
    assert parent_id == trace.format_span_id(call.context.span_id)  # the call span, not ours


async def test_tracing_off_sends_no_traceparent_and_records_nothing(
    exporter: InMemorySpanExporter,
) -> None:
    async with (
        recording_upstream() as (url, seen),
        serving(fake_tier_config(url, enabled=False), exporter) as sdk,
    ):
        await sdk.chat.completions.create(
            model="m", messages=QUESTION, extra_headers=CALLER, extra_body=PINNED
        )
    (headers,) = seen
    assert "traceparent" not in {name.lower() for name in headers}
    assert exporter.get_finished_spans() == ()


async def test_spans_reach_an_otlp_collector_with_its_headers_by_shutdown() -> None:
    """The production path: batch processor, OTLP/HTTP exporter, flushed when the app stops."""
    exports: list[tuple[dict[str, str], ExportTraceServiceRequest]] = []

    async def collect(request: web.Request) -> web.Response:
        message = ExportTraceServiceRequest()
        message.ParseFromString(await request.read())
        exports.append((dict(request.headers), message))
        return web.Response()

    async with (
        recording_upstream() as (url, _),
        listening({("POST", "/v1/traces"): collect}) as collector,
    ):
        tracing = {
            "enabled": True,
            "endpoint": collector + "/v1/traces",
            "service_name": "gw-test",
            "headers": {"x-tenant": "t1"},
        }
        app = create_app(settings_from_dict(fake_tier_config(url, **tracing)))
        async with app.router.lifespan_context(app):
            http = httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://gw")
            sdk = openai.AsyncOpenAI(
                base_url="http://gw/v1", api_key="x", http_client=http, max_retries=0
            )
            reply = await sdk.chat.completions.create(
                model="m", messages=QUESTION, extra_headers=CALLER, extra_body=PINNED
            )
    spans = {}
    for headers, message in exports:
        assert headers["Content-Type"] == "application/x-protobuf" and headers["x-tenant"] == "t1"
        for resource in message.resource_spans:
            names = {a.key: a.value.string_value for a in resource.resource.attributes}
            assert names["service.name"] == "gw-test"
            spans.update({s.name: s for scope in resource.scope_spans for s in scope.spans})
    assert sorted(spans) == ["ttc.request chat", "ttc.upstream sample"]
    request = spans["ttc.request chat"]
    assert request.trace_id.hex() == CALLER_TRACE and request.parent_span_id.hex() == CALLER_SPAN
    assert spans["ttc.upstream sample"].parent_span_id == request.span_id
    assert {a.key: a.value.string_value for a in request.attributes}["ttc.request_id"] == reply.id
