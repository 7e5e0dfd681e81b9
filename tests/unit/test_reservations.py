"""Budget reservations in process: the local holds (the rules while Redis is unavailable, and
here with no Redis at all), the 429 a refused reservation is, and ``over_budget: shrink``.

The app runs with a scripted backend and no Redis, driven by the official SDK over an ASGI
transport; the Lua scripts themselves run against a real Redis in
``tests/integration/test_reservations.py``.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import httpx2
import openai
import pytest
from fastapi import FastAPI

from core.backend import Completion
from core.contract import prompt_estimate
from server.app import create_app
from server.config import settings_from_dict
from server.context import AppContext
from state.config import LimitsConfig, RedisConfig
from state.keys import Quota
from state.limits import RateLimiter
from state.redis import SharedRedis
from state.reservations import BudgetReservations, Refusal, Reservation, refusal
from state.windows import DAY_MS
from tests.fakes import ScriptedBackend, completion

QUESTION: Any = [{"role": "user", "content": "What is the capital of France?"}]
T0 = 1_700_006_400_000  # a UTC day boundary


def holds(budget: int, now: list[int]) -> tuple[BudgetReservations, RateLimiter]:
    limiter = RateLimiter(LimitsConfig(), SharedRedis(RedisConfig()), clock_ms=lambda: now[0])
    return BudgetReservations(limiter, SharedRedis(RedisConfig())), limiter


async def test_local_holds_never_let_reserved_plus_spent_pass_the_budget() -> None:
    now = [T0 + 1000]
    reservations, limiter = holds(100, now)
    quota = Quota(tokens_per_day=100)
    first = await reservations.reserve("k", 100, 60, 60, ttl_s=10)
    assert isinstance(first, Reservation) and first.local and first.tokens == 60
    refused = await reservations.reserve("k", 100, 60, 60, ttl_s=10)
    assert isinstance(refused, Refusal) and refused.cause == "reserved"
    assert refused.retry_after_s == 10  # the first hold's expiry: room frees by then at the latest
    await reservations.settle(first, quota, 30)  # it spent half its worst case
    assert reservations.local.reserved("k", now[0]) == (0, 0)
    second = await reservations.reserve("k", 100, 60, 60, ttl_s=10)
    assert isinstance(second, Reservation)  # 30 spent + 60 held <= 100
    third = await reservations.reserve("k", 100, 60, 60, ttl_s=10)
    assert isinstance(third, Refusal)
    now[0] += 10_001  # the second hold expired: its replica never settled it
    third = await reservations.reserve("k", 100, 60, 60, ttl_s=10)
    assert isinstance(third, Reservation)
    assert limiter.fallbacks >= 4  # every decision was local: no Redis configured


async def test_a_smaller_least_takes_what_is_left() -> None:
    now = [T0]
    reservations, _ = holds(100, now)
    await reservations.reserve("k", 100, 70, 70, ttl_s=10)
    shrunk = await reservations.reserve("k", 100, 70, 20, ttl_s=10)
    assert isinstance(shrunk, Reservation) and (shrunk.tokens, shrunk.wanted) == (30, 70)
    assert shrunk.shrunk
    assert isinstance(await reservations.reserve("k", 100, 70, 20, ttl_s=10), Refusal)


def test_refusal_waits_for_the_next_day_only_when_the_spend_alone_is_too_much() -> None:
    spent = refusal(budget=100, least=30, now=T0 + 3_600_000, spent=80, earliest=0)
    assert spent.cause == "spent" and spent.retry_after_s == (DAY_MS - 3_600_000) / 1000
    held = refusal(budget=100, least=30, now=T0, spent=10, earliest=T0 + 42_000)
    assert held.cause == "reserved" and held.retry_after_s == 42.0
    error = held.error()
    assert error.status == 429 and error.code == "insufficient_quota"
    assert error.reason == "tokens_per_day"


@dataclass
class Slow(ScriptedBackend):
    """Answers after ``delay_s``, so concurrent requests overlap."""

    async def chat(
        self, tier: str, body: dict[str, Any], *, affinity: str | None = None
    ) -> Completion:
        self.calls.append((tier, body))
        await asyncio.sleep(self.delay_s)
        limit = int(body.get("max_tokens") or 4)
        return completion([" ".join(["Paris"] * limit)])


def app_with(tokens_per_day: int, over_budget: str, backend: Slow) -> FastAPI:
    settings = settings_from_dict(
        {
            "tiers": {"small": {"model": "m", "endpoints": ["http://127.0.0.1:9"]}},
            "server": {"request_timeout_s": 30},
            "cache": {"enabled": True},  # opt-in: only requests that ask for it
            "router": {"probe": {"mode": "never"}},
            "limits": {"tokens_per_day": tokens_per_day, "contract": {"over_budget": over_budget}},
        }
    )
    return create_app(settings, backend=backend)


def client_for(app: FastAPI) -> openai.AsyncOpenAI:
    http = httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://gw")
    return openai.AsyncOpenAI(base_url="http://gw/v1", api_key="x", http_client=http, max_retries=0)


def worst(max_tokens: int) -> int:
    body = {"messages": QUESTION, "max_tokens": max_tokens}
    return prompt_estimate(body) + max_tokens


async def ask(client: openai.AsyncOpenAI, max_tokens: int) -> Any:
    return await client.chat.completions.create(
        model="small",
        messages=QUESTION,
        max_tokens=max_tokens,
        extra_body={"ttc": {"policy": "single"}},
    )


async def test_reject_refuses_what_the_budget_cannot_hold_and_settles_every_reservation() -> None:
    backend = Slow(lambda t, b: ["x"], delay_s=0.05)
    app = app_with(3 * worst(8), "reject", backend)
    ctx: AppContext = app.state.ttc
    client = client_for(app)
    replies = await asyncio.gather(*(ask(client, 8) for _ in range(6)), return_exceptions=True)
    ok = [r for r in replies if not isinstance(r, BaseException)]
    refused = [r for r in replies if isinstance(r, openai.RateLimitError)]
    assert len(ok) == 3 and len(refused) == 3  # all six overlap: room for three worst cases
    for error in refused:
        assert error.code == "insufficient_quota"
        assert int(error.response.headers["retry-after"]) >= 1
    for reply in ok:
        contract = reply.model_extra["ttc"]["contract"]
        assert contract["reserved"] == worst(8) and "shrunk_from" not in contract
        assert reply.usage.model_extra["ttc_contract"]["reserved"] == worst(8)
    await ctx.guard.close()  # the settlements, written in the background
    assert ctx.guard._reservations.local.reserved("anonymous", 0) == (0, 0)
    assert ctx.metrics.budget_in_flight._value.get() == 0
    rejected = ctx.metrics.budget_rejected.labels("reserved")._value.get()
    assert rejected == 3


async def test_shrink_runs_the_request_within_what_is_left() -> None:
    backend = Slow(lambda t, b: ["x"], delay_s=0.0)
    left = worst(64) - 44  # the prompt and 20 answer tokens, not 64
    app = app_with(left, "shrink", backend)
    reply = await ask(client_for(app), 64)
    contract = reply.model_extra["ttc"]["contract"]
    assert contract["reserved"] == left and contract["shrunk_from"] == worst(64)
    assert contract["max_total_tokens"] == left
    assert backend.calls[0][1]["max_tokens"] == 20  # the metered backend enforced it upstream
    assert reply.usage.model_extra["ttc_contract"]["max_total_tokens"] == left


async def test_shrink_below_a_useful_answer_is_still_a_429() -> None:
    # Room for the prompt and 15 answer tokens: under MIN_SAMPLE_TOKENS (16).
    app = app_with(worst(64) - 49, "shrink", Slow(lambda t, b: ["x"]))
    with pytest.raises(openai.RateLimitError) as info:
        await ask(client_for(app), 64)
    assert info.value.code == "insufficient_quota"


async def test_streamed_and_text_completion_usage_carry_the_contract() -> None:
    backend = Slow(lambda t, b: ["x"], delay_s=0.0)
    client = client_for(app_with(10 * worst(8), "reject", backend))
    stream = await client.chat.completions.create(
        model="small",
        messages=QUESTION,
        max_tokens=8,
        stream=True,
        stream_options={"include_usage": True},
        extra_body={"ttc": {"policy": "single"}},
    )
    chunks = [chunk async for chunk in stream]
    usage = chunks[-1].usage
    assert usage is not None and (usage.model_extra or {})["ttc_contract"]["reserved"] == worst(8)
    text = await client.completions.create(
        model="small", prompt="2 + 3 =", max_tokens=8, extra_body={"ttc": {"policy": "single"}}
    )
    assert text.usage is not None and (text.usage.model_extra or {})["ttc_contract"]["reserved"] > 0


async def test_a_cached_answer_is_served_to_a_key_with_no_budget_left() -> None:
    """The reservation comes after the cache: a hit costs nothing, so it is never refused."""
    backend = Slow(lambda t, b: ["x"], delay_s=0.0)
    app = app_with(worst(8), "reject", backend)
    client = client_for(app)
    ttc = {"ttc": {"policy": "single", "cache": True}}
    first = await client.chat.completions.create(
        model="small", messages=QUESTION, max_tokens=8, temperature=0, extra_body=ttc
    )
    again = await client.chat.completions.create(
        model="small", messages=QUESTION, max_tokens=8, temperature=0, extra_body=ttc
    )
    assert again.choices[0].message.content == first.choices[0].message.content
    assert len(backend.calls) == 1  # the second came from the cache: the spent budget allowed it
    with pytest.raises(openai.RateLimitError):
        await ask(client, 8)  # a request that would run upstream is refused
