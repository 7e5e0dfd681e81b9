"""Token-id prompts on ``/v1/completions`` in process: the official SDK against the app with a
scripted backend, and the meter that bills them.

What is asserted is the gateway's part: the ids reach the upstream exactly as sent, one call
(``single``, said in ``ttc.reasons``), the worker's echo, the shapes refused, and the prompt
billed at its exact length when no usage came back. The scores against a real worker are in
tests/integration/test_token_prompts.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import openai
import pytest

from core.backend import Completion, Delta
from core.contract import ComputeContract, ContractMeter, prompt_estimate
from core.metering import MeteredBackend
from core.request import Decision, GenRequest
from core.usage import TokenUsage
from policies.single import SingleParams
from server.app import create_app
from server.config import settings_from_dict
from state.cache import cache_key
from tests.fakes import ScriptedBackend
from workers.client import upstream_path

IDS = [504, 3575, 282, 4649, 314]


def setup(answer: str = "Paris", **router: Any) -> tuple[openai.AsyncOpenAI, ScriptedBackend]:
    backend = ScriptedBackend(lambda tier, body: [answer] * int(body.get("n", 1)))
    settings = settings_from_dict(
        {
            "tiers": {"small": {"model": "m", "endpoints": ["http://127.0.0.1:9"]}},
            "router": {"probe": {"mode": "never"}, **router},
        }
    )
    app = create_app(settings, backend=backend)
    http = httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://gw")
    return openai.AsyncOpenAI(
        base_url="http://gw/v1", api_key="x", http_client=http, max_retries=0
    ), backend


@pytest.mark.parametrize("prompt", [IDS, [IDS]])
async def test_the_ids_go_upstream_as_sent_in_one_call_and_the_router_says_so(
    prompt: Any,
) -> None:
    """Whatever the band would run (here adaptive_bon for every difficulty), one call."""
    bands = [{"name": "all", "tier": "small", "policy": "adaptive_bon"}]
    client, backend = setup(bands=bands)
    reply = await client.completions.create(model="auto", prompt=prompt, max_tokens=4)
    ((tier, body),) = backend.calls
    assert tier == "small" and body["prompt"] == prompt and "messages" not in body
    assert upstream_path(body) == "/v1/completions"
    assert reply.choices[0].text == "Paris"  # nothing of the prompt prepended: no echo asked
    ttc = (reply.model_extra or {})["ttc"]
    assert ttc["policy"] == "single"
    assert any("token-id prompt" in reason for reason in ttc["reasons"])


async def test_lm_eval_scoring_shape_is_one_call_with_the_workers_echo() -> None:
    """lm-evaluation-harness's log-likelihood request: the worker echoes the prompt it
    detokenized (the gateway has no text to echo) and scores it; echo goes upstream even
    without logprobs, and a stream is not echoed twice."""
    client, backend = setup(answer="The capital of France is Paris")
    reply = await client.completions.create(
        model="auto", prompt=[IDS], echo=True, logprobs=1, max_tokens=0, temperature=0
    )
    ((_, body),) = backend.calls
    assert body["echo"] is True and body["max_tokens"] == 0 and body["logprobs"] == 1
    assert body["prompt"] == [IDS]
    assert reply.choices[0].text == "The capital of France is Paris"
    plain = await client.completions.create(model="auto", prompt=IDS, echo=True, max_tokens=2)
    assert backend.calls[-1][1]["echo"] is True
    assert plain.choices[0].text == "The capital of France is Paris"
    stream = await client.completions.create(
        model="auto", prompt=IDS, echo=True, max_tokens=2, stream=True
    )
    text = "".join([c.choices[0].text async for c in stream if c.choices])
    assert text.strip() == "The capital of France is Paris"


async def test_a_pinned_policy_other_than_single_is_refused_naming_the_field() -> None:
    client, backend = setup()
    with pytest.raises(openai.BadRequestError) as info:
        await client.completions.create(
            model="auto", prompt=[IDS], extra_body={"ttc": {"policy": "adaptive_bon"}}
        )
    assert info.value.body["param"] == "ttc.policy"  # type: ignore[index]
    assert "token-id" in info.value.message and backend.calls == []
    pinned = await client.completions.create(
        model="auto", prompt=[IDS], extra_body={"ttc": {"policy": "single"}}
    )
    assert (pinned.model_extra or {})["ttc"]["policy"] == "single"


@pytest.mark.parametrize(
    ("prompt", "says"),
    [
        ([[1, 2], [3]], "one prompt per request"),
        ([], "one prompt per request"),
        ([[]], "token-id prompt"),
        ([-1, 2], "token-id prompt"),
        ([True, 2], "token-id prompt"),
        ([1, "two"], "token-id prompt"),
        ([[1, 2.5]], "token-id prompt"),
    ],
)
async def test_malformed_token_prompts_are_a_400_naming_the_prompt(prompt: Any, says: str) -> None:
    client, backend = setup()
    with pytest.raises(openai.BadRequestError) as info:
        await client.completions.create(model="auto", prompt=prompt)
    assert info.value.body["param"] == "prompt"  # type: ignore[index]
    assert says in info.value.message and backend.calls == []


def test_two_token_prompts_never_share_a_cache_entry() -> None:
    """The router sees no text in either; the cache must still tell them apart."""
    decision = Decision("small", SingleParams())

    def key(ids: list[int]) -> str:
        req = GenRequest(
            messages=({"role": "user", "content": ""},),
            sampling={"temperature": 0},
            passthrough={"prompt": [ids]},
            prompt="",
        )
        return cache_key(req, decision, "k")

    assert key([1, 2, 3]) != key([1, 2, 4])


# --- billing ---------------------------------------------------------------------------------


def test_a_token_prompt_is_estimated_at_its_exact_length() -> None:
    ids = list(range(1000, 1300))
    assert prompt_estimate({"prompt": ids}) == 300
    assert prompt_estimate({"prompt": [ids]}) == 300
    assert prompt_estimate({"prompt": "three hundred"}) > 0  # text: the estimate as before


class Unreported:
    """A worker cut before it reported any usage: the chat never answers, the stream sends
    text and then nothing (its connection closed by the client)."""

    async def chat(
        self, tier: str, body: dict[str, Any], *, affinity: str | None = None
    ) -> Completion:
        await asyncio.sleep(10)
        raise AssertionError("unreachable")

    async def stream_chat(
        self, tier: str, body: dict[str, Any], *, affinity: str | None = None
    ) -> AsyncIterator[Delta]:
        for word in ("The", " answer", " is"):
            yield Delta(text=word)
        await asyncio.sleep(10)


@pytest.mark.parametrize("contract", [None, ComputeContract(max_total_tokens=10_000)])
async def test_a_call_cut_before_it_reported_bills_the_exact_prompt(
    contract: ComputeContract | None,
) -> None:
    ids = list(range(2000, 2077))
    meter = MeteredBackend(Unreported(), ContractMeter(contract) if contract else None)
    call = asyncio.ensure_future(meter.chat("t", {"prompt": [ids], "max_tokens": 5}))
    await asyncio.sleep(0.01)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert meter.spent == TokenUsage(77, 0)
    stream = meter.stream_chat("t", {"prompt": ids, "max_tokens": 5, "stream": True})
    assert [(await anext(stream)).text for _ in range(3)] == ["The", " answer", " is"]
    await stream.aclose()
    assert meter.spent == TokenUsage(77 + 77, 3)
