"""Tracing without the real worker: sub-call kinds, the pool's spans per attempt, the request
span from an incoming ``traceparent``, exemplars on /metrics, trace ids in the router's records.

The pool tests run against ``FakeUpstream`` workers (a 503 and a reset on demand, which a real
worker cannot produce); the gateway tests run the app in process with a scripted backend, so
they see the request span (upstream spans need the pool: tests/integration/test_tracing.py).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx2
import openai
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from core.backend import close_now
from core.tracing import CallTracer, current_kind, current_trace_id, streamed_as, subcall
from server.app import create_app
from server.config import ConfigError, settings_from_dict
from tests.fakes import ScriptedBackend
from tests.reliability.fake_upstream import MODEL, TOKENS, USAGE, FakeUpstream
from tests.unit.test_pool import MSG, key_for
from workers.config import BreakerConfig, PoolConfig, TierConfig
from workers.pool import WorkerPool

CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
PINNED: Any = {"ttc": {"policy": "single"}}
HI: Any = [{"role": "user", "content": "hi"}]


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    spans = InMemorySpanExporter()
    yield spans
    spans.shutdown()


def tracer_over(exporter: InMemorySpanExporter) -> trace.Tracer:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider.get_tracer("test")


def traced_pool(tracer: trace.Tracer, *urls: str, **config: Any) -> WorkerPool:
    """A pool as ``tests.unit.test_pool.make_pool`` makes it, tracing its calls."""
    breaker = BreakerConfig(failure_threshold=1, open_base_s=0.05)
    pool = PoolConfig(**{"affinity": "caller", "breaker": breaker, **config})
    tiers = {"small": TierConfig(model=MODEL, endpoints=urls)}
    return WorkerPool(tiers, pool, tracer=CallTracer(tracer))


def attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


# --- kinds -----------------------------------------------------------------------------------


async def test_a_subcall_kind_nests_follows_its_tasks_and_defaults_to_sample() -> None:
    assert current_kind() == "sample"
    with subcall("escalation"):
        with subcall("probe"):
            assert current_kind() == "probe"
        assert await asyncio.create_task(asyncio.sleep(0, current_kind())) == "escalation"
    assert current_kind() == "sample"


async def test_a_streamed_stage_makes_its_calls_as_its_kind_in_every_step() -> None:
    """Each step runs in a task of its own, as the server's keep-alive ticker runs them."""

    async def stage() -> AsyncIterator[str]:
        for _ in range(3):
            yield current_kind()

    events = streamed_as("escalation", stage())
    kinds = [await asyncio.create_task(anext(events)) for _ in range(3)]
    assert kinds == ["escalation"] * 3 and current_kind() == "sample"
    await events.aclose()


# --- the pool's spans ------------------------------------------------------------------------


async def test_each_attempt_is_a_child_span_a_failed_one_in_error(
    exporter: InMemorySpanExporter,
) -> None:
    down = await FakeUpstream(mode="503").start()
    up = await FakeUpstream(token_delay_s=0.001).start()
    tracer = tracer_over(exporter)
    pool = traced_pool(tracer, down.url, up.url, max_attempts=2)
    try:
        with tracer.start_as_current_span("request") as parent, subcall("probe"):
            await pool.chat("small", MSG, affinity=key_for(down.url, (down.url, up.url)))
    finally:
        await pool.close()
        await down.close()
        await up.close()
    failed, answered = [s for s in exporter.get_finished_spans() if s.name != "request"]
    for span in (failed, answered):
        assert span.name == "ttc.upstream probe" and span.kind is trace.SpanKind.CLIENT
        assert span.parent is not None and span.parent.span_id == parent.get_span_context().span_id
    assert attrs(failed)["ttc.worker"] == down.url and attrs(failed)["ttc.attempt"] == 1
    assert attrs(failed)["error.type"] == "WorkerFailed"
    assert failed.status.status_code is trace.StatusCode.ERROR
    assert attrs(answered) == {
        "ttc.kind": "probe",
        "ttc.tier": "small",
        "ttc.worker": up.url,
        "ttc.stream": False,
        "ttc.attempt": 2,
        "ttc.cancelled": False,
        "ttc.tokens.prompt": USAGE["prompt_tokens"],
        "ttc.tokens.completion": TOKENS,
        "ttc.tokens.reasoning": 0,
    }


async def test_a_stream_closed_early_ends_its_span_cancelled_with_the_tokens_so_far(
    exporter: InMemorySpanExporter,
) -> None:
    upstream = await FakeUpstream(token_delay_s=0.001).start()
    pool = traced_pool(tracer_over(exporter), upstream.url)
    deltas = pool.stream_chat("small", MSG)
    seen = [(await anext(deltas)).text for _ in range(3)]
    await close_now(deltas)  # as a policy that stopped early closes it
    whole = [d.text async for d in pool.stream_chat("small", MSG)]
    await pool.close()
    await upstream.close()
    cut, finished = exporter.get_finished_spans()
    assert attrs(cut)["ttc.cancelled"] is True and attrs(cut)["ttc.stream"] is True
    assert attrs(cut)["ttc.tokens.completion"] == sum(1 for text in seen if text) < TOKENS
    assert cut.status.status_code is trace.StatusCode.UNSET  # cancelled is not an error
    assert attrs(finished)["ttc.cancelled"] is False
    assert attrs(finished)["ttc.tokens.completion"] == TOKENS == len("".join(whole))


# --- the gateway, in process -----------------------------------------------------------------


def gateway(
    exporter: InMemorySpanExporter, tracing: dict[str, Any] | None = None, **sections: Any
) -> tuple[openai.AsyncOpenAI, httpx2.AsyncClient]:
    settings = settings_from_dict(
        {
            "tiers": {"small": {"model": "m", "endpoints": ["http://127.0.0.1:9"]}},
            "router": {"probe": {"mode": "never"}, **sections.pop("router", {})},
            "tracing": {"enabled": True, **(tracing or {})},
            **sections,
        }
    )
    backend = ScriptedBackend(lambda tier, body: ["Paris"] * int(body.get("n", 1)))
    app = create_app(settings, backend=backend, span_exporter=exporter)
    http = httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://gw")
    sdk = openai.AsyncOpenAI(base_url="http://gw/v1", api_key="x", http_client=http, max_retries=0)
    return sdk, http


async def test_the_request_span_carries_the_decision_outcome_and_tokens(
    exporter: InMemorySpanExporter,
) -> None:
    sdk, _ = gateway(exporter)
    reply = await sdk.chat.completions.create(model="auto", messages=HI, extra_body=PINNED)
    (span,) = exporter.get_finished_spans()
    assert span.name == "ttc.request chat" and span.kind is trace.SpanKind.SERVER
    assert span.parent is None  # no traceparent came in: a new trace
    got = attrs(span)
    assert reply.usage is not None and got["ttc.request_id"] == reply.id
    assert (got["ttc.tier"], got["ttc.policy"], got["ttc.status"]) == ("small", "single", "ok")
    assert got["ttc.tokens.completion"] == reply.usage.completion_tokens
    assert got["ttc.tokens.prompt"] == reply.usage.prompt_tokens
    assert got["ttc.stream"] is False and got["http.response.status_code"] == 200


async def test_a_caller_traceparent_makes_the_request_its_child_and_unsampled_records_nothing(
    exporter: InMemorySpanExporter,
) -> None:
    sdk, _ = gateway(exporter, {"sample_ratio": 0.0})  # only a caller's sampled flag records
    header = {"traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"}
    await sdk.chat.completions.create(
        model="auto", messages=HI, extra_body=PINNED, extra_headers=header
    )
    (span,) = exporter.get_finished_spans()
    assert trace.format_trace_id(span.context.trace_id) == CALLER_TRACE
    assert span.parent is not None and trace.format_span_id(span.parent.span_id) == CALLER_SPAN
    exporter.clear()
    unsampled = {"traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-00"}
    for headers in (unsampled, {"traceparent": "garbage"}, {}):
        await sdk.chat.completions.create(
            model="auto", messages=HI, extra_body=PINNED, extra_headers=headers
        )
    assert exporter.get_finished_spans() == ()


async def test_a_refused_request_ends_its_span_once_with_its_status(
    exporter: InMemorySpanExporter,
) -> None:
    sdk, _ = gateway(exporter)
    with pytest.raises(openai.BadRequestError):
        await sdk.chat.completions.create(
            model="auto", messages=HI, extra_body={"ttc": {"policy": "nope"}}
        )
    (span,) = exporter.get_finished_spans()
    assert attrs(span)["ttc.status"] == "400" and attrs(span)["error.type"]
    assert span.status.status_code is trace.StatusCode.UNSET  # the client's error, not ours


async def test_metrics_carry_the_trace_id_as_exemplar_to_an_openmetrics_scraper(
    exporter: InMemorySpanExporter,
) -> None:
    sdk, http = gateway(exporter)
    await sdk.chat.completions.create(model="auto", messages=HI, extra_body=PINNED)
    (span,) = exporter.get_finished_spans()
    exemplar = f'# {{trace_id="{trace.format_trace_id(span.context.trace_id)}"}}'
    open_metrics = await http.get("/metrics", headers={"accept": "application/openmetrics-text"})
    assert open_metrics.headers["content-type"].startswith("application/openmetrics-text")
    lines = open_metrics.text.splitlines()
    for family in (
        "ttc_request_duration_seconds_bucket",
        "ttc_tokens_total",
        "ttc_request_tokens_bucket",
    ):
        assert any(ln.startswith(family) and exemplar in ln for ln in lines), family
    plain = await http.get("/metrics")
    assert plain.headers["content-type"].startswith("text/plain") and "trace_id" not in plain.text


async def test_a_contract_shows_in_metrics_and_on_the_span(exporter: InMemorySpanExporter) -> None:
    sdk, http = gateway(exporter)
    ttc = {"policy": "single", "max_total_tokens": 500}
    reply = await sdk.chat.completions.create(model="auto", messages=HI, extra_body={"ttc": ttc})
    assert reply.usage is not None
    (span,) = exporter.get_finished_spans()
    assert attrs(span)["ttc.contract.used_tokens"] == reply.usage.total_tokens
    text = (await http.get("/metrics")).text
    assert 'ttc_contract_tokens_total{kind="allowed"} 500.0' in text
    assert f'ttc_contract_tokens_total{{kind="used"}} {float(reply.usage.total_tokens)}' in text
    assert 'ttc_contract_requests_total{status="ok",stop_reason="none"} 1.0' in text


async def test_the_router_trace_record_names_the_trace(
    exporter: InMemorySpanExporter, tmp_path: Path
) -> None:
    path = tmp_path / "traces.jsonl"
    sdk, _ = gateway(exporter, router={"traces": {"path": str(path)}})
    stream = await sdk.chat.completions.create(
        model="auto", messages=HI, extra_body=PINNED, stream=True
    )
    async for _ in stream:
        pass
    (span,) = exporter.get_finished_spans()
    for _ in range(200):  # the sink writes from its own thread
        if path.exists() and path.read_text():
            break
        await asyncio.sleep(0.01)
    (record,) = [json.loads(line) for line in path.read_text().splitlines()]
    assert record["trace_id"] == trace.format_trace_id(span.context.trace_id)
    assert current_trace_id() is None  # the request's span never leaks into its caller


async def test_tracing_off_records_nothing(exporter: InMemorySpanExporter) -> None:
    sdk, _ = gateway(exporter, {"enabled": False})
    header = {"traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"}
    await sdk.chat.completions.create(
        model="auto", messages=HI, extra_body=PINNED, extra_headers=header
    )
    assert exporter.get_finished_spans() == ()


@pytest.mark.parametrize(
    ("tracing", "where"),
    [
        ({"sample_ratio": 1.5}, "tracing.sample_ratio"),
        ({"enable": True}, "tracing.enable"),
        ({"service_name": ""}, "tracing.service_name"),
    ],
)
def test_bad_tracing_config_names_the_key(tracing: dict[str, Any], where: str) -> None:
    with pytest.raises(ConfigError, match=where):
        settings_from_dict(
            {
                "tiers": {"small": {"model": "m", "endpoints": ["http://127.0.0.1:9"]}},
                "tracing": tracing,
            }
        )
