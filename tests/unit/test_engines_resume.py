"""A stream that survives its worker (``workers.resume``): continued on another worker from the
text already sent, over ``FakeUpstream`` workers that die mid-stream on demand (a real worker
cannot be killed at a chosen token) and continue a final message as vLLM does."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from core.backend import Delta
from core.errors import StreamInterrupted
from core.metering import StreamProgress
from core.profile import Thinking
from tests.reliability.fake_upstream import TOKENS, USAGE, FakeUpstream, refusing_url
from tests.unit.test_pool import key_for, make_pool
from workers.engines import ENGINES
from workers.resume import Resumption, resumable

BODY: dict[str, Any] = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 16}


@pytest.fixture
async def pair() -> AsyncIterator[tuple[FakeUpstream, FakeUpstream]]:
    a = await FakeUpstream(text="a", token_delay_s=0.001, mode="die", die_after=3).start()
    b = await FakeUpstream(text="b", token_delay_s=0.001).start()
    yield a, b
    await a.close()
    await b.close()


async def test_a_stream_whose_worker_dies_is_finished_by_another_from_what_was_sent(
    pair: tuple[FakeUpstream, FakeUpstream],
) -> None:
    a, b = pair
    pool = make_pool(a.url, b.url)
    to_a = key_for(a.url, (a.url, b.url))
    deltas = [d async for d in pool.stream_chat("small", BODY, affinity=to_a)]
    # Three tokens from a, the rest of the answer from b: continued, not started over.
    assert "".join(d.text for d in deltas) == "aaa" + "b" * (TOKENS - 3)
    assert sum(1 for d in deltas if d.raw.get("delta", {}).get("role")) == 1
    assert [d.finish_reason for d in deltas if d.finish_reason] == ["stop"]
    assert (a.died, b.continued) == (1, 1)
    usage = [d.usage for d in deltas if d.usage is not None]
    assert len(usage) == 1 and usage[0].completion_tokens == 3 + (TOKENS - 3)
    # Both calls billed: a's prompt (estimated: it died before reporting) and b's.
    assert usage[0].prompt_tokens > USAGE["prompt_tokens"]
    await pool.close()


async def test_the_continuation_holds_the_prefix_and_what_is_left_of_max_tokens() -> None:
    sent = Resumption(dict(BODY), thinking=None)
    for text in ("The ", "answer"):
        assert sent.relay(Delta(text=text, raw={"delta": {"content": text}})) is not None
    seen = StreamProgress(started=True, text_deltas=2)
    assert sent.resume(seen)
    body = sent.continuing()
    assert body["messages"][-1] == {"role": "assistant", "content": "The answer"}
    assert body["continue_final_message"] is True and body["add_generation_prompt"] is False
    assert body["max_tokens"] == 16 - 2
    role = Delta(raw={"delta": {"role": "assistant", "content": ""}})
    assert sent.relay(role) is None  # the second call's role chunk never reaches the client


def test_a_stream_in_its_thinking_is_continued_inside_the_thinking() -> None:
    thinking = Thinking(parser="deepseek_r1")
    sent = Resumption(dict(BODY), thinking=thinking)
    sent.relay(Delta(reasoning="Two plus two", raw={"delta": {"reasoning": "Two plus two"}}))
    assert sent.resume(StreamProgress(started=True, text_deltas=1))
    assert sent.continuing()["messages"][-1]["content"] == "<think>\nTwo plus two"
    sent.relay(Delta(reasoning=" is four.", raw={"delta": {"reasoning": " is four."}}))
    sent.relay(Delta(text="4", raw={"delta": {"content": "4"}}))
    assert sent.resume(StreamProgress(started=True, text_deltas=2))
    assert sent.continuing()["messages"][-1]["content"] == "<think>\nTwo plus two is four.</think>4"


def test_which_streams_resume() -> None:
    vllm = ENGINES["vllm"]
    assert resumable(vllm, BODY)
    assert not resumable(vllm, {**BODY, "n": 2})
    assert not resumable(vllm, {**BODY, "logprobs": True})
    assert not resumable(vllm, {**BODY, "tools": [{"type": "function"}]})
    assert not resumable(ENGINES["llamacpp"], BODY)  # no continuing of a final message
    assert not resumable(ENGINES["openai"], BODY)
    sent = Resumption(dict(BODY), thinking=None)
    call = {"tool_calls": [{"index": 0, "function": {"name": "f"}}]}
    sent.relay(Delta(raw={"delta": call}))
    assert not sent.resume(StreamProgress(started=True))  # a tool call cannot be a prefix


async def test_a_stream_no_other_worker_can_continue_keeps_its_interruption(
    pair: tuple[FakeUpstream, FakeUpstream],
) -> None:
    a, _ = pair
    dead = refusing_url()
    pool = make_pool(a.url, dead)
    seen: list[str] = []
    with pytest.raises(StreamInterrupted) as info:
        async for delta in pool.stream_chat("small", BODY, affinity=key_for(a.url, (a.url, dead))):
            seen.append(delta.text)
    assert "".join(seen) == "aaa" and info.value.usage.completion_tokens == 3
    await pool.close()
