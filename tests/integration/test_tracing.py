"""Traces of real requests: the OpenAI SDK -> the gateway (in process, uvicorn on a real socket,
so a client that leaves really disconnects) -> the real SmolLM2 worker, every span exported
to the SDK's ``InMemorySpanExporter``.

What must hold: one ``ttc.request chat`` span per request, a child ``ttc.upstream <kind>`` span
per upstream call with the right kind and tier, and the spans' tokens adding up, per kind and
tier, to the itemised usage the client was billed; a stream the client leaves ends its spans
(the upstream one cancelled, the request 499); an incoming ``traceparent`` is honoured.
What leaves the gateway (the header to workers, spans to a collector): test_tracing_wire.py.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import openai
import pytest
import uvicorn
from openai.types.chat import ChatCompletionMessageParam
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from server.app import create_app
from server.config import settings_from_dict
from tests.integration.conftest import MODEL, free_port, gateway_config

QUESTION: list[ChatCompletionMessageParam] = [
    {"role": "user", "content": "What is the capital of France? Think step by step, then answer."}
]
CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
TRACED = {"tracing": {"enabled": True}}


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    spans = InMemorySpanExporter()
    yield spans
    spans.shutdown()


@contextlib.asynccontextmanager
async def serving(
    config: dict[str, Any], exporter: InMemorySpanExporter
) -> AsyncIterator[openai.AsyncOpenAI]:
    """The gateway for ``config`` on a free port, lifespan and all; an SDK client of it."""
    app = create_app(settings_from_dict(config), span_exporter=exporter)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    serve = asyncio.create_task(server.serve())
    while not server.started:
        if serve.done():
            serve.result()  # it failed to start: say why
        await asyncio.sleep(0.02)
    try:
        async with openai.AsyncOpenAI(
            base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=0, timeout=300
        ) as sdk:
            yield sdk
    finally:
        server.should_exit = True
        await serve


def tree(exporter: InMemorySpanExporter) -> tuple[ReadableSpan, list[ReadableSpan]]:
    """The one request span, and its upstream spans (each checked to be its child)."""
    spans = exporter.get_finished_spans()
    (request,) = [s for s in spans if s.name.startswith("ttc.request")]
    calls = [s for s in spans if s is not request]
    for call in calls:
        assert call.name == f"ttc.upstream {attrs(call)['ttc.kind']}"
        assert call.context.trace_id == request.context.trace_id
        assert call.parent is not None and call.parent.span_id == request.context.span_id
    return request, calls


def attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def spent_by(calls: list[ReadableSpan]) -> dict[tuple[str, str], tuple[int, int]]:
    """(prompt, completion) tokens of the spans, by (kind, tier)."""
    out: dict[tuple[str, str], tuple[int, int]] = {}
    for call in calls:
        a = attrs(call)
        key = (a["ttc.kind"], a["ttc.tier"])
        prompt, completion = out.get(key, (0, 0))
        out[key] = (
            prompt + a.get("ttc.tokens.prompt", 0),
            completion + a.get("ttc.tokens.completion", 0),
        )
    return out


def billed_by(usage: Any) -> dict[tuple[str, str], tuple[int, int]]:
    rows = usage.model_dump()["ttc_details"]
    return {(r["kind"], r["tier"]): (r["prompt_tokens"], r["completion_tokens"]) for r in rows}


async def test_convergence_spans_its_chain_and_each_probe(
    worker_url: str, exporter: InMemorySpanExporter
) -> None:
    """Temperature 0: the probes agree early (tests/integration/test_convergence.py), so the
    chain's stream is closed before its end: its span says cancelled."""
    async with serving(gateway_config(worker_url, **TRACED), exporter) as sdk:
        reply = await sdk.chat.completions.create(
            model=MODEL,
            messages=QUESTION,
            max_tokens=128,
            temperature=0,
            extra_body={"ttc": {"policy": "convergence", "probe_every": 16}},
        )
    request, calls = tree(exporter)
    ttc = (reply.model_extra or {})["ttc"]
    assert ttc["stop_reason"] == "converged"
    (chain,) = [c for c in calls if attrs(c)["ttc.kind"] == "sample"]
    probes = [c for c in calls if attrs(c)["ttc.kind"] == "probe"]
    assert len(probes) >= ttc["probes"] >= 1 and attrs(chain)["ttc.stream"] is True
    assert attrs(chain)["ttc.cancelled"] is True and attrs(chain)["ttc.worker"] == worker_url
    assert spent_by(calls) == billed_by(reply.usage)
    got = attrs(request)
    assert (got["ttc.tier"], got["ttc.policy"], got["ttc.status"]) == (MODEL, "convergence", "ok")
    assert reply.usage is not None and got["ttc.tokens.completion"] == reply.usage.completion_tokens
    assert got["ttc.stop_reason"] == "converged" and got["ttc.request_id"] == reply.id


async def test_adaptive_bon_spans_one_sample_call_per_round(
    worker_url: str, exporter: InMemorySpanExporter
) -> None:
    ttc = {
        "policy": "adaptive_bon",
        "min_samples": 2,
        "step": 2,
        "max_samples": 4,
        "single_sample_confidence": None,
    }
    async with serving(gateway_config(worker_url, **TRACED), exporter) as sdk:
        reply = await sdk.chat.completions.create(
            model=MODEL, messages=QUESTION, max_tokens=24, extra_body={"ttc": ttc}
        )
    _, calls = tree(exporter)
    samples = (reply.model_extra or {})["ttc"]["samples"]
    assert {attrs(c)["ttc.kind"] for c in calls} == {"sample"}
    assert len(calls) == samples // 2  # rounds of 2 samples each
    assert spent_by(calls) == billed_by(reply.usage)


async def test_speculative_spans_drafts_and_judge_calls_on_their_tiers(
    worker_url: str, exporter: InMemorySpanExporter
) -> None:
    roles = {"speculative": {"draft_tier": "small", "judge_tier": "large"}}
    config = gateway_config(worker_url, policies=roles, **TRACED)
    async with serving(config, exporter) as sdk:
        reply = await sdk.chat.completions.create(
            model=MODEL,
            messages=QUESTION,
            max_tokens=64,
            temperature=0,
            extra_body={"ttc": {"policy": "speculative", "max_steps": 2}},
        )
    _, calls = tree(exporter)
    by_kind = spent_by(calls)
    assert ("draft", "small") in by_kind and ("judge", "large") in by_kind
    assert by_kind == billed_by(reply.usage)  # rewrites: ("sample", "large") in both


@pytest.mark.parametrize("stream", [False, True])
async def test_cascade_spans_the_escalated_stage_as_escalation(
    worker_url: str, exporter: InMemorySpanExporter, stream: bool
) -> None:
    """``escalate_below: 1.0`` always escalates: a vote's Beta confidence is below 1."""
    roles = {"cascade": {"small_tier": "small", "large_tier": "large"}}
    ttc = {"policy": "cascade", "escalate_below": 1.0, "large_policy": "single"}
    config = gateway_config(
        worker_url, policies=roles, router={"probe": {"mode": "never"}}, **TRACED
    )
    async with serving(config, exporter) as sdk:
        if stream:
            chunks = [
                c
                async for c in await sdk.chat.completions.create(
                    model="auto",
                    messages=QUESTION,
                    max_tokens=16,
                    stream=True,
                    stream_options={"include_usage": True},
                    extra_body={"ttc": ttc},
                )
            ]
            report, usage = (chunks[-1].model_extra or {})["ttc"], chunks[-1].usage
        else:
            reply = await sdk.chat.completions.create(
                model="auto", messages=QUESTION, max_tokens=16, extra_body={"ttc": ttc}
            )
            report, usage = (reply.model_extra or {})["ttc"], reply.usage
    assert report["escalated"] is True
    _, calls = tree(exporter)
    by_kind = spent_by(calls)
    assert {kind for kind, _ in by_kind} == {"sample", "escalation"}
    assert {tier for kind, tier in by_kind if kind == "escalation"} == {"large"}
    billed = billed_by(usage)
    assert by_kind[("escalation", "large")] == billed.pop(("sample", "large"))
    assert {k: v for k, v in by_kind.items() if k[0] == "sample"} == billed  # the small stage


async def test_a_stream_the_client_leaves_ends_its_spans_cancelled_and_499(
    worker_url: str, exporter: InMemorySpanExporter
) -> None:
    async with serving(gateway_config(worker_url, **TRACED), exporter) as sdk:
        stream = await sdk.chat.completions.create(
            model=MODEL,
            messages=QUESTION,
            max_tokens=1500,
            stream=True,
            extra_body={"ignore_eos": True, "ttc": {"policy": "single"}},
        )
        received = 0
        async for chunk in stream:
            received += bool(chunk.choices and chunk.choices[0].delta.content)
            if received == 3:
                break
        await stream.close()
        for _ in range(600):  # the gateway notices the disconnect, then settles the request
            if any(s.name.startswith("ttc.request") for s in exporter.get_finished_spans()):
                break
            await asyncio.sleep(0.05)
    request, (call,) = tree(exporter)
    assert attrs(request)["ttc.status"] == "499" and attrs(request)["ttc.stream"] is True
    assert attrs(call)["ttc.cancelled"] is True
    assert 3 <= attrs(call)["ttc.tokens.completion"] < 1500
    assert attrs(request)["ttc.tokens.completion"] == attrs(call)["ttc.tokens.completion"]


async def test_the_router_probe_is_a_route_probe_span(
    worker_url: str, exporter: InMemorySpanExporter
) -> None:
    config = gateway_config(worker_url, router={"probe": {"mode": "always"}}, **TRACED)
    async with serving(config, exporter) as sdk:
        reply = await sdk.chat.completions.create(
            model="auto", messages=QUESTION, max_tokens=8, extra_body={"ttc": {"policy": "single"}}
        )
    _, calls = tree(exporter)
    by_kind = spent_by(calls)
    billed = billed_by(reply.usage)  # the ledger bills the router's probe as kind "probe"
    assert sorted(kind for kind, _ in by_kind) == ["route_probe", "sample"]
    assert {(k.replace("route_", ""), tier): v for (k, tier), v in by_kind.items()} == billed


async def test_a_caller_traceparent_parents_the_request_and_its_calls(
    worker_url: str, exporter: InMemorySpanExporter
) -> None:
    header = {"traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"}
    async with serving(gateway_config(worker_url, **TRACED), exporter) as sdk:
        await sdk.chat.completions.create(
            model=MODEL,
            messages=QUESTION,
            max_tokens=8,
            extra_headers=header,
            extra_body={"ttc": {"policy": "single"}},
        )
    request, calls = tree(exporter)
    assert trace.format_trace_id(request.context.trace_id) == CALLER_TRACE
    assert request.parent is not None
    assert trace.format_span_id(request.parent.span_id) == CALLER_SPAN
    assert [attrs(c)["ttc.kind"] for c in calls] == ["sample"]
