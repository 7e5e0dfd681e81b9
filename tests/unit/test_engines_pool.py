"""The pool at its edges, over fake upstreams on real sockets: endpoints an upstream lacks,
workers whose checks pass but whose calls time out, rate limits, refused credentials, keys on
every call, votes on an engine that ignores ``n``.

The upstreams are fakes because each test is about a condition a real worker cannot produce
on demand (a hang, a 429, a refused key, a 404 for one endpoint): ``FakeUpstream``
(tests/reliability/fake_upstream.py) stands in for a vLLM worker, ``HostedFake``
(tests/hosted_fake.py) for a hosted API that enforces its key.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from core.errors import (
    DeadlineExceeded,
    UnsupportedByTier,
    UnsupportedEndpoint,
    UpstreamAuthFailed,
    UpstreamRateLimited,
)
from core.tracing import CallTracer
from tests.hosted_fake import ANSWER, HostedFake
from tests.hosted_fake import MODEL as HOSTED_MODEL
from tests.reliability.fake_upstream import MODEL, TOKENS, FakeUpstream
from tests.unit.test_pool import MSG, key_for, make_pool
from workers.breaker import BreakerState
from workers.config import BreakerConfig, PoolConfig, TierConfig
from workers.pool import WorkerPool

KEY = "sk-test-4f9a8b7c6d5e4f3a2b1c"
WRONG = "sk-wrong-0a1b2c3d4e5f6a7b8c9d"
ENV = {"HOSTED_KEY": KEY}


@pytest.fixture
async def hosted() -> AsyncIterator[tuple[HostedFake, HostedFake]]:
    a = await HostedFake(key=KEY, answer="from a").start()
    b = await HostedFake(key=KEY, answer="from b").start()
    yield a, b
    await a.close()
    await b.close()


def hosted_pool(*urls: str, engine: str = "openai", **tier: Any) -> WorkerPool:
    config = TierConfig(
        model=HOSTED_MODEL, engine=engine, endpoints=urls, **{"api_key_env": "HOSTED_KEY", **tier}
    )
    settings = PoolConfig(affinity="caller", breaker=BreakerConfig(failure_threshold=1))
    return WorkerPool({"large": config}, settings, env=ENV)


async def test_an_endpoint_the_upstream_lacks_fails_the_request_never_the_worker() -> None:
    """Three text completions to a server without /v1/completions, then a chat: at once."""
    a = await FakeUpstream(text="a", token_delay_s=0.001).start()
    pool = make_pool(a.url)
    for _ in range(3):
        with pytest.raises(UnsupportedEndpoint, match="tier 'small' does not serve /v1/comp"):
            await pool.chat("small", {"prompt": "Once", "max_tokens": 2})
    with pytest.raises(UnsupportedEndpoint):
        async for _ in pool.stream_chat("small", {"prompt": "Once", "max_tokens": 2}):
            pass
    worker = pool.workers["small"][0]
    assert worker.breaker.state is BreakerState.CLOSED and pool.counters.failures == {}
    assert (await pool.chat("small", MSG)).choices[0].text == "a" * TOKENS
    a.mode = "501"
    with pytest.raises(UnsupportedEndpoint, match="its upstream answered 501") as info:
        await pool.chat("small", MSG)
    assert info.value.status == 501 and worker.breaker.state is BreakerState.CLOSED
    await pool.close()
    await a.close()


async def test_a_worker_whose_calls_time_out_gets_trials_and_is_back_within_open_max() -> None:
    """``a``'s health checks pass while its calls hang; ``b`` takes every request meanwhile, so
    no request would ever be ``a``'s trial: the pool's own trial calls, on the breaker's
    schedule, bring it back once it answers again."""
    a = await FakeUpstream(text="a", token_delay_s=0.001).start()
    b = await FakeUpstream(text="b", token_delay_s=0.001).start()
    a.mode = "hang"
    breaker = BreakerConfig(
        failure_threshold=1, open_base_s=0.1, open_max_s=0.4, trial_timeout_s=0.2
    )
    tier = TierConfig(model=MODEL, endpoints=(a.url, b.url), request_timeout_s=0.3)
    pool = WorkerPool({"small": tier}, PoolConfig(affinity="caller", breaker=breaker))
    to_a = key_for(a.url, (a.url, b.url))
    with pytest.raises(DeadlineExceeded):
        await pool.chat("small", MSG, affinity=to_a)
    worker = pool.workers["small"][0]
    assert worker.breaker.state.value == "open"
    loop = asyncio.get_running_loop()
    started = loop.time()
    while loop.time() - started < 1.5:  # health checks every 50 ms; a keeps hanging
        await pool.check_health()
        assert (await pool.chat("small", MSG, affinity=to_a)).choices[0].text == "b" * TOKENS
        await asyncio.sleep(0.05)
    trials = a.chats - 1
    # 1.5 s of backoff 0.1, 0.2, 0.4, 0.4, ... plus 0.2 s per failed trial: 3 or 4 trials,
    # not one per check (30).
    assert 2 <= trials <= 5, trials
    a.mode = "ok"
    recovered = loop.time()
    while worker.breaker.state is not BreakerState.CLOSED and loop.time() - recovered < 2:
        await pool.check_health()
        await asyncio.sleep(0.05)
    assert worker.breaker.state is BreakerState.CLOSED
    assert loop.time() - recovered <= 0.4 + 0.2 + 0.1  # open_max_s + a trial + an interval
    assert (await pool.chat("small", MSG, affinity=to_a)).choices[0].text == "a" * TOKENS
    await pool.close()
    await a.close()
    await b.close()


async def test_a_rate_limited_worker_cools_off_for_its_retry_after_and_is_never_ejected(
    hosted: tuple[HostedFake, HostedFake],
) -> None:
    a, b = hosted
    a.rate_limited, a.retry_after_s = 1, 1
    pool = hosted_pool(a.url, b.url)
    to_a = key_for(a.url, (a.url, b.url))
    for _ in range(3):
        done = await pool.chat("large", MSG, affinity=to_a)
        assert done.choices[0].text == "from b"
    assert a.calls["/v1/chat/completions"] == 1  # honoured: not called again while cooling
    worker = pool.workers["large"][0]
    assert worker.breaker.state is BreakerState.CLOSED and pool.counters.failures == {}
    await asyncio.sleep(1.05)
    assert (await pool.chat("large", MSG, affinity=to_a)).choices[0].text == "from a"
    await pool.close()


async def test_a_tier_whose_every_worker_is_rate_limited_is_a_429_with_retry_after(
    hosted: tuple[HostedFake, HostedFake],
) -> None:
    a, _ = hosted
    a.rate_limited, a.retry_after_s = 5, 2
    pool = hosted_pool(a.url)
    with pytest.raises(UpstreamRateLimited) as info:
        await pool.chat("large", MSG)
    assert info.value.status == 429 and info.value.retry_after == 2
    with pytest.raises(UpstreamRateLimited):  # cooling: not sent at all
        async for _ in pool.stream_chat("large", MSG):
            pass
    assert a.calls["/v1/chat/completions"] == 1
    assert pool.workers["large"][0].breaker.state is BreakerState.CLOSED
    await pool.close()


async def test_a_refused_key_marks_the_tier_not_ready_and_a_rotated_file_fixes_it(
    hosted: tuple[HostedFake, HostedFake], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The upstream's 401 quotes the key it was sent; the key reaches no message, no log."""
    caplog.set_level(logging.DEBUG)
    a, _ = hosted
    key_file = tmp_path / "key"
    key_file.write_text(WRONG)
    pool = hosted_pool(a.url, api_key_env=None, api_key_file=str(key_file))
    await pool.check_health()
    assert pool.ready() == {"large": False}
    assert "refused the gateway's credentials (401)" in pool.not_ready()["large"]
    with pytest.raises(UpstreamAuthFailed) as info:
        await pool.chat("large", MSG)
    assert info.value.status == 502 and WRONG not in info.value.message
    assert a.refused == 2 and pool.counters.failures == {}
    key_file.write_text(KEY + "\n")  # the secret rotated under a running gateway
    pool.workers["large"][0].check_ok = None  # the hosted engine's checks are sparse
    await pool.check_health()
    assert pool.ready() == {"large": True} and pool.not_ready() == {}
    assert (await pool.chat("large", MSG)).choices[0].text == "from a"
    assert WRONG not in caplog.text and KEY not in caplog.text
    await pool.close()


async def test_the_key_goes_with_health_checks_and_metric_scrapes() -> None:
    """A keyed vLLM-style upstream: /health, /v1/models and /metrics all want the key."""
    keyed = await HostedFake(key=KEY, with_health=True).start()
    pool = hosted_pool(keyed.url, engine="vllm")
    await pool.check_health()
    await pool.scrape_signals()
    assert pool.ready() == {"large": True} and keyed.refused == 0
    assert keyed.calls["/health"] == 1 and keyed.calls["/metrics"] == 1
    assert pool.signals.fresh(keyed.url) is not None
    await pool.close()
    await keyed.close()


async def test_a_hosted_api_is_checked_sparingly_and_sent_what_it_understands(
    hosted: tuple[HostedFake, HostedFake],
) -> None:
    a, _ = hosted
    pool = hosted_pool(a.url)
    for _ in range(3):
        await pool.check_health()
        await pool.scrape_signals()
    assert a.calls == {"/v1/models": 1}  # no /health, no /metrics, one listing a minute
    body = {**MSG, "chat_template_kwargs": {"enable_thinking": False}}
    await pool.chat("large", body)
    deltas = [d async for d in pool.stream_chat("large", body)]
    assert a.bodies[0] == {
        "messages": MSG["messages"],
        "model": HOSTED_MODEL,
        "max_completion_tokens": 4,
    }
    assert a.bodies[1]["stream_options"] == {"include_usage": True}
    assert "".join(d.text for d in deltas) == "from a"
    assert [d.usage for d in deltas if d.usage is not None][0].completion_tokens == 2
    with pytest.raises(UnsupportedByTier, match="lacks continue_final_message"):
        await pool.chat("large", {**MSG, "continue_final_message": True})
    assert len(a.bodies) == 2  # refused before anything was sent
    await pool.close()


async def test_a_vote_on_an_engine_without_n_draws_its_samples_as_separate_calls() -> None:
    """The llama.cpp server answers one choice whatever ``n`` says, and one call at a time."""
    llama = await HostedFake(key=KEY, one_at_a_time=True, token_delay_s=0.002).start()
    pool = hosted_pool(llama.url, engine="llamacpp")
    done = await pool.chat("large", {**MSG, "n": 3, "seed": 7})
    assert [c.index for c in done.choices] == [0, 1, 2]
    assert [b.get("n") for b in llama.bodies] == [None] * 3
    assert [b["seed"] for b in llama.bodies] == [7, 8, 9]
    assert done.usage.completion_tokens == 3 * 4
    deltas = [d async for d in pool.stream_chat("large", {**MSG, "n": 2})]
    assert {d.index for d in deltas if d.text} == {0, 1}
    texts = ["".join(d.text for d in deltas if d.index == i) for i in (0, 1)]
    assert texts == [ANSWER, ANSWER] and len(llama.bodies) == 5
    assert all("stream_options" not in b for b in llama.bodies)
    assert llama.overlapped == 0  # never two calls at once on the one-at-a-time server
    await pool.close()
    await llama.close()


async def test_a_key_quoted_back_by_a_401_reaches_no_span(
    hosted: tuple[HostedFake, HostedFake],
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    a, _ = hosted
    config = TierConfig(
        model=HOSTED_MODEL, engine="openai", endpoints=(a.url,), api_key_env="HOSTED_KEY"
    )
    tracer = CallTracer(provider.get_tracer("test"))
    pool = WorkerPool({"large": config}, PoolConfig(), env={"HOSTED_KEY": WRONG}, tracer=tracer)
    with pytest.raises(UpstreamAuthFailed):
        await pool.chat("large", MSG)
    with pytest.raises(UpstreamAuthFailed):
        async for _ in pool.stream_chat("large", MSG):
            pass
    spans = exporter.get_finished_spans()
    assert len(spans) == 2 and a.refused == 2
    for span in spans:
        seen = [span.name, str(dict(span.attributes or {})), str(span.status.description)]
        seen += [f"{e.name} {dict(e.attributes or {})}" for e in span.events]
        assert not any(WRONG in text for text in seen)
    await pool.close()
    exporter.shutdown()


async def test_a_one_at_a_time_worker_is_not_checked_while_it_serves() -> None:
    """The llama.cpp server answers /v1/models only between calls (one lock for both): a check
    during a call would time out and eject a worker that is working."""
    llama = await HostedFake(key=KEY, one_at_a_time=True, token_delay_s=0.05).start()
    pool = hosted_pool(llama.url, engine="llamacpp")
    await pool.check_health()
    assert llama.calls["/v1/models"] == 1
    call = asyncio.create_task(pool.chat("large", MSG))
    while not llama.busy:
        await asyncio.sleep(0.01)
    await pool.check_health()
    assert llama.calls["/v1/models"] == 1  # skipped: the call in flight will judge the worker
    assert (await call).choices[0].text == ANSWER
    await pool.check_health()
    assert llama.calls["/v1/models"] == 2 and pool.ready() == {"large": True}
    await pool.close()
    await llama.close()
