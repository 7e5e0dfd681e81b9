"""Every token a request causes is billed, and ``usage`` is the bill, whichever way it ends.

The backends are fakes: what is asserted is the gateway's own accounting on paths a real
worker cannot be made to take on demand (a sub-call cut by the contract at a known point, a
probe still running when the chain ends, a sibling still generating when another fails).
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx2
import openai
import pytest
from fastapi import FastAPI

from core.backend import Completion, Delta
from core.errors import UpstreamError
from core.usage import TokenUsage
from server.app import create_app
from server.config import settings_from_dict
from state.keys import hash_key
from tests.fakes import ScriptedBackend
from tests.unit.test_router_probe import LogprobBackend
from tests.unit.test_thinking_budget import QUESTION, RunawayThinker

CAPITAL: Any = [{"role": "user", "content": "What is the capital of France?"}]
SECRET = "sk-small-only-0123456789"


def make_app(backend: Any, **extra: Any) -> FastAPI:
    tiers = {"small": {"model": "m", "endpoints": ["http://127.0.0.1:9"], "profile": "smollm2"}}
    config = {"tiers": tiers, "router": {"probe": {"mode": "never"}}, **extra}
    return create_app(settings_from_dict(config), backend=backend)


def client_for(app: FastAPI, key: str = "x") -> openai.AsyncOpenAI:
    http = httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://gw")
    return openai.AsyncOpenAI(base_url="http://gw/v1", api_key=key, http_client=http, max_retries=0)


def charges(app: FastAPI) -> list[int]:
    """Every token count the settlement bills a key (``Guard.settle``), in order."""
    guard = app.state.ttc.guard
    billed: list[int] = []
    settle = guard.settle

    def recording(caller: Any, reservation: Any, tokens: int) -> Any:
        billed.append(tokens)
        return settle(caller, reservation, tokens)

    guard.settle = recording
    return billed


async def test_a_cache_hit_bills_and_shows_the_probe_that_routed_it() -> None:
    backend = LogprobBackend(respond=lambda t, b: ["Paris"])
    app = make_app(backend, router={"probe": {"mode": "always"}}, cache={"enabled": True})
    billed = charges(app)
    ask = {
        "model": "auto",
        "messages": CAPITAL,
        "temperature": 0,
        "extra_body": {"ttc": {"policy": "single", "cache": True}},
    }
    await client_for(app).chat.completions.create(**ask)
    again = await client_for(app).chat.completions.create(**ask)
    assert again.model_extra["ttc"]["cache"] == "hit"
    probes = [body for _, body in backend.calls if "top_logprobs" in body]
    assert len(probes) == 2  # the hit was routed too
    assert again.usage is not None and billed[1] == again.usage.total_tokens > 0
    kinds = {d["kind"] for d in again.usage.model_extra["ttc_details"]}
    assert kinds == {"probe"}


class Escalates(ScriptedBackend):
    """Four different answers (no agreement: cascade escalates), then a long large-tier
    stream that the contract cuts."""

    def stream_chat(self, tier: str, body: dict[str, Any], *, affinity: str | None = None) -> Any:
        return super().stream_chat(tier, {**body, "stream": True}, affinity=affinity)


def escalating(tier: str, body: dict[str, Any]) -> list[str]:
    if body.get("stream"):
        return [" ".join(["word"] * 200)]
    return ["The answer is A", "The answer is B", "The answer is C"][: int(body.get("n") or 1)]


async def test_a_stage_the_contract_cut_is_in_usage_as_billed() -> None:
    app = make_app(Escalates(escalating))
    billed = charges(app)
    stream = await client_for(app).chat.completions.create(
        model="small",
        messages=CAPITAL,
        stream=True,
        stream_options={"include_usage": True},
        extra_body={
            "ttc": {
                "policy": "cascade",
                "large_policy": "single",
                "small_max_samples": 2,
                "max_total_tokens": 200,
            }
        },
    )
    usage = [chunk async for chunk in stream][-1].usage
    assert usage is not None
    assert billed == [usage.total_tokens]
    contract = usage.model_extra["ttc_contract"]  # type: ignore[index]
    assert contract["used_tokens"] == usage.total_tokens
    assert "dropped" in {d["kind"] for d in usage.model_extra["ttc_details"]}  # type: ignore[index]


class SlowProbes(ScriptedBackend):
    """A chain that ends before its probe answers: the probe is cancelled in flight."""

    async def chat(
        self, tier: str, body: dict[str, Any], *, affinity: str | None = None
    ) -> Completion:
        self.calls.append((tier, body))
        await asyncio.sleep(5)
        raise AssertionError("the chain ends first")

    async def stream_chat(
        self, tier: str, body: dict[str, Any], *, affinity: str | None = None
    ) -> Any:
        for word in ["Step", "one.\n\n", "Step", "two.\n\n", "So", "Paris."]:
            await asyncio.sleep(0.01)
            yield Delta(text=word + " ")
        yield Delta(finish_reason="stop")
        await asyncio.sleep(0.05)
        yield Delta(usage=TokenUsage(10, 6))


async def test_a_probe_cancelled_in_flight_is_billed_its_prompt_and_shown() -> None:
    backend = SlowProbes(lambda t, b: ["x"])
    app = make_app(backend)
    billed = charges(app)
    reply = await client_for(app).chat.completions.create(
        model="small",
        messages=[{"role": "user", "content": "Capital of France? Step by step"}],
        extra_body={"ttc": {"policy": "convergence", "probe_every": 4}},
    )
    ttc: Any = reply.model_extra["ttc"]  # type: ignore[index]
    assert ttc["probes_cancelled"] >= 1
    assert reply.usage is not None and billed == [reply.usage.total_tokens]
    details = reply.usage.model_extra["ttc_details"]  # type: ignore[index]
    assert sum(d["prompt_tokens"] for d in details) > 10  # the chain's 10 and the probe's


class OneContinuationFails(RunawayThinker):
    """Forced thinking with n=2: the first answer continuation fails at once, the second is
    still generating."""

    async def chat(
        self, tier: str, body: dict[str, Any], *, affinity: str | None = None
    ) -> Completion:
        if body.get("continue_final_message"):
            self.calls.append((tier, body))
            if len([b for _, b in self.calls if b.get("continue_final_message")]) == 1:
                raise UpstreamError("worker answered 404")
            await asyncio.sleep(0.3)
            self.late = True
            raise AssertionError("a sibling outlived its request")
        return await super().chat(tier, body, affinity=affinity)


async def test_a_failed_forced_answer_stops_its_siblings() -> None:
    backend = OneContinuationFails(lambda t, b: ["x"])
    tiers = {
        "thinking": {
            "model": "m",
            "endpoints": ["http://127.0.0.1:9"],
            "profile": "smollm2_thinking",
        }
    }
    app = create_app(
        settings_from_dict({"tiers": tiers, "router": {"probe": {"mode": "never"}}}),
        backend=backend,
    )
    billed = charges(app)
    with pytest.raises(openai.APIStatusError):
        await client_for(app).chat.completions.create(
            model="thinking",
            messages=QUESTION,
            n=2,
            seed=100,
            max_tokens=64,
            extra_body={"ttc": {"policy": "single"}},
        )
    await asyncio.sleep(0.5)
    assert not getattr(backend, "late", False)
    assert len(billed) == 1 and billed[0] > 0


@pytest.mark.parametrize(
    ("policy", "ttc"), [("cascade", {"small_max_samples": 2}), ("speculative", {"max_steps": 1})]
)
async def test_a_key_limited_to_a_tier_cannot_reach_another_through_a_policy(
    policy: str, ttc: dict[str, Any]
) -> None:
    backend = ScriptedBackend(lambda t, b: ["The answer is A"] * int(b.get("n") or 1))
    tiers = {
        "small": {"model": "m", "endpoints": ["http://127.0.0.1:9"], "cost_per_1k_tokens": 1},
        "large": {"model": "M", "endpoints": ["http://127.0.0.1:8"], "cost_per_1k_tokens": 10},
    }
    keys = [{"name": "alice", "key_hash": hash_key(SECRET), "tiers": ["small"]}]
    app = create_app(
        settings_from_dict(
            {
                "tiers": tiers,
                "router": {"probe": {"mode": "never"}},
                "auth": {"enabled": True, "redis_keys": False, "keys": keys},
            }
        ),
        backend=backend,
    )
    with pytest.raises(openai.PermissionDeniedError) as info:
        await client_for(app, SECRET).chat.completions.create(
            model="small", messages=CAPITAL, extra_body={"ttc": {"policy": policy, **ttc}}
        )
    assert "'large'" in info.value.message and policy in info.value.message
    assert info.value.body["param"] == "ttc.policy"  # type: ignore[index]
    assert backend.calls == []  # refused before any worker call
