"""The cache key: equal for requests that must get the same answer, different otherwise."""

from __future__ import annotations

from typing import Any

import pytest

from core.errors import InvalidRequest
from core.profile import ThinkingPlan
from core.request import Decision, GenRequest
from core.result import PolicyResult, ResultChoice
from core.usage import TokenUsage, UsageLedger
from policies.adaptive_bon import AdaptiveBonParams
from policies.single import SingleParams
from state.cache import ResponseCache, cache_key, decode, deterministic, encode, split_cache_flag
from state.config import CacheConfig, RedisConfig
from state.redis import SharedRedis
from workers.profiles import PRESETS

MSG = ({"role": "user", "content": "What is the capital of France?"},)
PLAN = Decision(tier="small", params=SingleParams())


def req(**sampling: Any) -> GenRequest:
    passthrough = sampling.pop("passthrough", {})
    messages = sampling.pop("messages", MSG)
    return GenRequest(messages=messages, sampling=sampling, passthrough=passthrough)


def key(request: GenRequest, decision: Decision = PLAN, scope: str = "alice") -> str:
    return cache_key(request, decision, scope)


def test_equivalent_spellings_share_a_key() -> None:
    base = key(req(temperature=0, max_tokens=8, stop=["\n"]))
    assert key(req(max_tokens=8, stop="\n", temperature=0)) == base
    assert key(req(temperature=0, max_tokens=8, stop=["\n"], n=1, logprobs=False)) == base
    assert key(req(temperature=0, max_tokens=8, stop=["\n"], passthrough={"user": "u1"})) == base


@pytest.mark.parametrize(
    "other",
    [
        req(temperature=0, max_tokens=9, stop=["\n"]),
        req(temperature=0, max_tokens=8, stop=["."]),
        req(temperature=0, max_tokens=8, stop=["\n"], seed=1),
        req(temperature=0, max_tokens=8, stop=["\n"], n=2),
        req(temperature=0, max_tokens=8, stop=["\n"], passthrough={"top_k": 5}),
        req(
            temperature=0,
            max_tokens=8,
            stop=["\n"],
            messages=({"role": "user", "content": "What is the capital of Spain?"},),
        ),
    ],
)
def test_anything_that_changes_the_answer_changes_the_key(other: GenRequest) -> None:
    assert key(other) != key(req(temperature=0, max_tokens=8, stop=["\n"]))


def test_the_decision_and_the_scope_are_part_of_the_key() -> None:
    request = req(temperature=0)
    assert key(request, Decision(tier="large", params=SingleParams())) != key(request)
    bon = Decision(tier="small", params=AdaptiveBonParams(max_samples=4))
    assert key(request, bon) != key(request)
    assert key(request, bon) != key(request, Decision("small", AdaptiveBonParams(max_samples=8)))
    assert key(request, scope="bob") != key(request)


def test_a_thinking_budget_is_part_of_the_key() -> None:
    """A budget of 0 (thinking off) and of 512 give different answers on a reasoning tier."""
    thinking = PRESETS["qwen3"].thinking
    assert thinking is not None
    request = req(temperature=0)
    off = Decision("small", SingleParams(), thinking=ThinkingPlan(thinking, 0, "ttc"))
    on = Decision("small", SingleParams(), thinking=ThinkingPlan(thinking, 512, "ttc"))
    assert len({key(request, off), key(request, on), key(request)}) == 3


def test_only_temperature_zero_or_a_seed_is_deterministic() -> None:
    assert deterministic(req(temperature=0))
    assert deterministic(req(temperature=0.9, seed=7))
    assert not deterministic(req(temperature=0.7))
    assert not deterministic(req())


def cache(clock: list[float] | None = None, **config: Any) -> ResponseCache:
    now = clock or [0.0]
    return ResponseCache(CacheConfig(**config), SharedRedis(RedisConfig()), lambda: now[0])


def test_cache_is_opt_in_twice() -> None:
    greedy = req(temperature=0)
    assert not cache().wanted(greedy, True)  # disabled in config
    opt_in = cache(enabled=True)
    assert opt_in.wanted(greedy, True)
    assert not opt_in.wanted(greedy, None)
    assert not opt_in.wanted(req(temperature=0.7), True)
    always = cache(enabled=True, opt_in=False)
    assert always.wanted(greedy, None) and not always.wanted(greedy, False)


def test_cache_flag_is_taken_out_of_ttc_and_validated() -> None:
    assert split_cache_flag({"cache": True, "policy": "single"}) == ({"policy": "single"}, True)
    assert split_cache_flag(None) == ({}, None)
    with pytest.raises(InvalidRequest) as info:
        split_cache_flag({"cache": "yes"})
    assert info.value.param == "ttc.cache"


def result() -> PolicyResult:
    ledger = UsageLedger()
    ledger.add("sample", "small", TokenUsage(12, 5))
    choice = ResultChoice(0, "Paris", "stop", None, ())
    return PolicyResult(choices=(choice,), usage=ledger, report={"samples": 1})


def test_a_hit_returns_the_answer_spends_nothing_and_says_so() -> None:
    hit = decode(encode(result()))
    assert hit.message == "Paris" and hit.choices[0].finish_reason == "stop"
    assert hit.usage.total == TokenUsage()
    assert hit.report["cache"] == "hit" and hit.report["samples"] == 1
    assert hit.report["cached_usage"] == {"prompt_tokens": 12, "completion_tokens": 5}


async def test_local_cache_without_redis_expires_and_stays_bounded() -> None:
    now = [0.0]
    local = cache(now, enabled=True, ttl_s=10, local_entries=2)
    await local.put("a", result())
    assert (await local.get("a"))[0] == "hit"
    now[0] = 10.0
    assert await local.get("a") == ("miss", None)
    for name in ("b", "c", "d"):
        await local.put(name, result())
    assert (await local.get("b"))[0] == "miss"  # evicted: only the two newest remain
    assert (await local.get("d"))[0] == "hit"


async def test_oversized_answers_are_not_cached() -> None:
    small = cache(enabled=True, max_entry_bytes=1024)
    big = PolicyResult((ResultChoice(0, "x" * 2000, "stop"),), UsageLedger(), {})
    await small.put("big", big)
    assert await small.get("big") == ("miss", None)
