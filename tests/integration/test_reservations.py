"""Budget reservations with the real Redis: the Lua scripts, a storm of 50 concurrent requests
on the real worker, and the reservations of clients that leave and of a worker that dies.

The storm runs on a ``ttc serve`` gateway in front of the session's real vLLM worker and a
private redis-server, driven by the official ``AsyncOpenAI``. The worker's death is a
``FakeUpstream`` (``tests/reliability/fake_upstream.py``) behind an in-process gateway: a real
worker cannot be made to reset a stream after a chosen number of tokens, and a second one
cannot run on this machine.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import httpx
import httpx2
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from core.contract import prompt_estimate
from server.app import create_app
from server.config import settings_from_dict
from state.config import LimitsConfig, RedisConfig
from state.keys import Quota, hash_key
from state.limits import RateLimiter
from state.redis import SharedRedis
from state.reservations import BudgetReservations, Refusal, Reservation
from tests.integration.conftest import GatewayFactory, RedisServer, gateway_config
from tests.reliability.fake_upstream import FakeUpstream

PREFIX = "ttc-resv:"
STORM_KEY, DEATH_KEY = "sk-test-storm-5e1d", "sk-test-death-90ab"
MSG: Any = [{"role": "user", "content": "What is the capital of France? One word."}]
PROMPT = prompt_estimate({"messages": MSG})
SINGLE = PROMPT + 8  # worst case of a single sample of max_tokens 8
VOTE = PROMPT + 2 * 8  # one round of two samples (min_samples = max_samples = 2, no gate)
LEAVER = PROMPT + 64
LEAVERS, STORM, VOTERS = 3, 47, 5  # 50 requests in all
BUDGET = LEAVERS * LEAVER + 10 * SINGLE  # the leavers, then room for 10 worst cases


def redis_sum(redis: RedisServer, key: str) -> int:
    return sum(int(v) for v in redis.cli("HVALS", key).split())


def spent(redis: RedisServer, secret: str) -> int:
    return redis_sum(redis, f"{PREFIX}limit:{{{hash_key(secret)[:16]}}}:tokens_per_day")


def reserved(redis: RedisServer, secret: str) -> int:
    value = redis.cli("HGET", f"{PREFIX}reserved:{{{hash_key(secret)[:16]}}}", "total")
    return int(value or 0)


def wait_for(condition: Any, what: str, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def metric(url: str, name: str, **labels: str) -> float:
    text = httpx.get(url + "/metrics", trust_env=False, timeout=10).text
    return sum(
        s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == name and labels.items() <= s.labels.items()
    )


async def test_lua_reserves_atomically_settles_once_and_sweeps_expired(
    redis_server: RedisServer,
) -> None:
    redis = SharedRedis(RedisConfig(url=redis_server.url, key_prefix="lua-resv:", timeout_s=1))
    redis.start()
    limiter = RateLimiter(LimitsConfig(), redis)
    holds = BudgetReservations(limiter, redis)
    quota = Quota(tokens_per_day=100)
    try:
        asks = [holds.reserve("k", 100, 10, 10, ttl_s=60) for _ in range(30)]
        replies = await asyncio.gather(*asks)
        granted = [r for r in replies if isinstance(r, Reservation)]
        assert len(granted) == 10  # reserved + spent <= budget, whatever the interleaving
        assert all(
            isinstance(r, Refusal) and r.cause == "reserved" for r in replies if r not in granted
        )
        assert redis_server.cli("HGET", "lua-resv:reserved:{k}", "total") == "100"
        for reservation in granted:
            await holds.settle(reservation, quota, 7)
            await holds.settle(reservation, quota, 0)  # a second settlement releases nothing
        assert redis_server.cli("EXISTS", "lua-resv:reserved:{k}") == "0"
        assert redis_sum(redis_server, "lua-resv:limit:{k}:tokens_per_day") == 70
        full = await holds.reserve("k", 100, 40, 40, ttl_s=60)
        assert isinstance(full, Refusal) and full.cause == "spent"  # 70 + 40 > 100 today
        short = await holds.reserve("k", 100, 30, 30, ttl_s=0.2)
        assert isinstance(short, Reservation)
        await asyncio.sleep(0.5)  # its replica "died": the hold expires unsettled
        again = await holds.reserve("k", 100, 30, 30, ttl_s=60)
        assert isinstance(again, Reservation)  # the expired hold was swept first
        assert redis_server.cli("HGET", "lua-resv:reserved:{k}", "total") == "30"
        assert limiter.fallbacks == 0  # every decision was taken in Redis
    finally:
        await redis.close()


@pytest.fixture(scope="module")
def storm_gateway(worker_url: str, redis_server: RedisServer, start_gateway: GatewayFactory) -> str:
    key = {"name": "storm", "key_hash": hash_key(STORM_KEY), "tokens_per_day": BUDGET}
    return start_gateway(
        gateway_config(
            worker_url,
            redis={"url": redis_server.url, "key_prefix": PREFIX},
            auth={"enabled": True, "keys": [key]},
            router={"probe": {"mode": "never"}},
        )
    )


async def leave_mid_stream(client: openai.AsyncOpenAI, holding: asyncio.Event) -> int:
    """A stream of up to 64 tokens, closed after its second content chunk."""
    stream = await client.chat.completions.create(
        model="small",
        messages=MSG,
        max_tokens=64,
        stream=True,
        extra_body={"ignore_eos": True, "ttc": {"policy": "single"}},
    )
    received = 0
    async for chunk in stream:
        received += bool(chunk.choices and chunk.choices[0].delta.content)
        holding.set()
        if received == 2:
            break
    await stream.close()  # hangs up: the gateway cancels the generation and settles
    return received


async def ask(client: openai.AsyncOpenAI, vote: bool) -> Any:
    ttc: dict[str, Any] = {"policy": "single"}
    if vote:
        ttc = {
            "policy": "adaptive_bon",
            "min_samples": 2,
            "max_samples": 2,
            "single_sample_confidence": None,
        }
    try:
        return await client.chat.completions.create(
            model="small", messages=MSG, max_tokens=8, extra_body={"ttc": ttc}
        )
    except openai.RateLimitError as exc:
        return exc


async def test_a_storm_of_50_never_spends_past_the_budget_and_releases_everything(
    storm_gateway: str, redis_server: RedisServer
) -> None:
    client = openai.AsyncOpenAI(
        base_url=storm_gateway + "/v1", api_key=STORM_KEY, max_retries=0, timeout=300
    )
    gone_before = metric(storm_gateway, "ttc_unfinished_tokens_total")
    async with client:
        holding = [asyncio.Event() for _ in range(LEAVERS)]
        leavers = [asyncio.ensure_future(leave_mid_stream(client, e)) for e in holding]
        await asyncio.gather(*(e.wait() for e in holding))  # each holds its reservation
        storm = await asyncio.gather(*(ask(client, i < VOTERS) for i in range(STORM)))
        assert all(received == 2 for received in await asyncio.gather(*leavers))
    answered = [r for r in storm if not isinstance(r, openai.RateLimitError)]
    refused = [r for r in storm if isinstance(r, openai.RateLimitError)]
    # Room for 10 single worst cases; a vote's is larger, so at least this many always fit.
    assert len(answered) >= 10 * SINGLE // VOTE
    assert refused, "47 requests of at least a prompt each cannot fit in this budget"
    for error in refused:
        assert error.code == "insufficient_quota"
        assert int(error.response.headers["retry-after"]) >= 1
    for reply in answered:
        assert reply.model_extra["ttc"]["contract"]["reserved"] in (SINGLE, VOTE)
    wait_for(lambda: reserved(redis_server, STORM_KEY) == 0, "reservations still held")
    # What the leavers spent before they hung up (whether their settlement saw the hang-up or
    # the cancelled upstream call first: outcome disconnect or error; nothing else failed).
    gone = metric(storm_gateway, "ttc_unfinished_tokens_total") - gone_before
    assert gone >= 2 * LEAVERS  # each leaver was billed at least what it received
    billed = sum(r.usage.total_tokens for r in answered) + int(gone)
    wait_for(lambda: spent(redis_server, STORM_KEY) == billed, "spend never settled to usage")
    assert spent(redis_server, STORM_KEY) <= BUDGET
    assert metric(storm_gateway, "ttc_budget_reserved_in_flight_tokens") == 0
    assert metric(storm_gateway, "ttc_budget_reservation_rejected_total") == len(refused)


@pytest.fixture
def dying() -> Iterator[FakeUpstream]:
    yield FakeUpstream(mode="die", die_after=3)


async def test_a_worker_that_dies_mid_stream_releases_the_reservation(
    redis_server: RedisServer, dying: FakeUpstream
) -> None:
    await dying.start()
    key = {"name": "death", "key_hash": hash_key(DEATH_KEY), "tokens_per_day": 10_000}
    settings = settings_from_dict(
        {
            "tiers": {"small": {"model": "fake", "endpoints": [dying.url]}},
            "redis": {"url": redis_server.url, "key_prefix": PREFIX},
            "auth": {"enabled": True, "keys": [key]},
            "router": {"probe": {"mode": "never"}},
        }
    )
    app = create_app(settings)
    http = httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://gw")
    client = openai.AsyncOpenAI(
        base_url="http://gw/v1", api_key=DEATH_KEY, http_client=http, max_retries=0
    )
    try:
        async with app.router.lifespan_context(app):
            stream = await client.chat.completions.create(
                model="small",
                messages=MSG,
                max_tokens=8,
                stream=True,
                extra_body={"ttc": {"policy": "single"}},
            )
            texts: list[str] = []
            with pytest.raises(openai.APIError):
                async for chunk in stream:
                    texts.append(chunk.choices[0].delta.content or "" if chunk.choices else "")
            assert "".join(texts) == "x" * 3 and dying.died == 1
            await app.state.ttc.guard.close()  # the settlement, written in the background
    finally:
        await dying.close()
    assert reserved(redis_server, DEATH_KEY) == 0
    # The tokens streamed before the reset, and the prompt the worker took in before them
    # (it died before reporting it: estimated, as the contract estimates an unreported prompt)
    assert spent(redis_server, DEATH_KEY) == 3 + prompt_estimate({"messages": MSG})
