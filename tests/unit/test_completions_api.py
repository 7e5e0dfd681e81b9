"""``/v1/completions`` in process: the official SDK against the app with a scripted backend.

What is asserted is the gateway's own part (the raw prompt upstream, echo, the policies that
run on raw text, the wire shapes); tests/integration/test_completions.py uses the real worker.
"""

from __future__ import annotations

from typing import Any

import httpx2
import openai
import pytest

from server.app import create_app
from server.config import settings_from_dict
from tests.fakes import ScriptedBackend
from workers.client import text_body, upstream_path


def setup(answer: str = "Paris") -> tuple[openai.AsyncOpenAI, ScriptedBackend]:
    backend = ScriptedBackend(lambda tier, body: [answer] * int(body.get("n", 1)))
    settings = settings_from_dict(
        {
            "tiers": {"small": {"model": "m", "endpoints": ["http://127.0.0.1:9"]}},
            "router": {"probe": {"mode": "never"}},
        }
    )
    app = create_app(settings, backend=backend)
    http = httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://gw")
    return openai.AsyncOpenAI(
        base_url="http://gw/v1", api_key="x", http_client=http, max_retries=0
    ), backend


PINNED: Any = {"ttc": {"policy": "single"}}


async def test_the_raw_prompt_goes_upstream_and_the_answer_comes_back() -> None:
    client, backend = setup()
    reply = await client.completions.create(
        model="auto", prompt="The capital of France is", max_tokens=8, extra_body=PINNED
    )
    assert reply.object == "text_completion" and reply.choices[0].text == "Paris"
    assert reply.usage is not None and reply.usage.completion_tokens == 1
    assert (reply.model_extra or {})["ttc"]["policy"] == "single"
    _, body = backend.calls[0]
    assert body["prompt"] == "The capital of France is" and "messages" not in body
    assert upstream_path(body) == "/v1/completions"


async def test_echo_prepends_the_prompt_stream_and_not() -> None:
    client, _ = setup()
    reply = await client.completions.create(
        model="auto", prompt="Say: ", echo=True, extra_body=PINNED
    )
    assert reply.choices[0].text == "Say: Paris"
    stream = await client.completions.create(
        model="auto", prompt="Say: ", echo=True, stream=True, extra_body=PINNED
    )
    text = "".join([c.choices[0].text async for c in stream if c.choices])
    assert text.strip() == "Say: Paris"


async def test_adaptive_bon_votes_on_raw_text_and_chat_only_policies_are_refused() -> None:
    client, backend = setup("Paris")
    reply = await client.completions.create(
        model="auto",
        prompt="Q: capital of France? A:",
        max_tokens=8,
        extra_body={"ttc": {"policy": "adaptive_bon", "max_samples": 4}},
    )
    ttc = (reply.model_extra or {})["ttc"]
    assert ttc["policy"] == "adaptive_bon" and reply.choices[0].text == "Paris"
    assert all("prompt" in body for _, body in backend.calls)
    with pytest.raises(openai.BadRequestError) as info:
        await client.completions.create(
            model="auto", prompt="x", extra_body={"ttc": {"policy": "convergence"}}
        )
    assert info.value.body["param"] == "ttc.policy"  # type: ignore[index]


async def test_several_prompts_and_unknown_fields_are_refused_naming_them() -> None:
    client, _ = setup()
    with pytest.raises(openai.BadRequestError) as info:
        await client.completions.create(model="auto", prompt=["a", "b"])
    assert info.value.body["param"] == "prompt"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as info:
        await client.completions.create(model="auto", prompt="a", extra_body={"bogus": 1})
    assert "bogus" in info.value.message


def test_chat_logprobs_become_the_completions_form() -> None:
    body = text_body({"prompt": "x", "logprobs": True, "top_logprobs": 3})
    assert body == {"prompt": "x", "logprobs": 3}
    assert text_body({"messages": [], "logprobs": True}) == {"messages": [], "logprobs": True}
    assert text_body({"prompt": "x", "logprobs": True, "top_logprobs": 0})["logprobs"] == 0


async def test_echo_with_logprobs_is_scored_by_the_worker_in_one_call() -> None:
    """The worker echoes (its logprobs then cover the prompt): the gateway does not echo
    again, runs one call whatever the band says, and refuses a voting policy for it."""
    client, backend = setup(answer="Say: Paris")  # as a worker echoing the prompt answers
    reply = await client.completions.create(
        model="auto", prompt="Say: ", echo=True, logprobs=1, max_tokens=0
    )
    assert reply.choices[0].text == "Say: Paris"  # the worker's echo, once
    ((_, body),) = backend.calls
    assert body["echo"] is True and body["max_tokens"] == 0 and body["logprobs"]
    assert (reply.model_extra or {})["ttc"]["policy"] == "single"
    with pytest.raises(openai.BadRequestError) as info:
        await client.completions.create(
            model="auto",
            prompt="x",
            echo=True,
            logprobs=1,
            extra_body={"ttc": {"policy": "adaptive_bon"}},
        )
    assert info.value.body["param"] == "ttc.policy"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as info:
        await client.completions.create(model="auto", prompt="x", max_tokens=0)
    assert info.value.body["param"] == "max_tokens"  # type: ignore[index]


@pytest.mark.parametrize(
    ("extra", "param", "says"),
    [
        ({"prompt": [[1, 2], [3]]}, "prompt", "one prompt per request"),
        ({"prompt": "x", "suffix": "y"}, "suffix", "suffix"),
    ],
)
async def test_what_is_not_supported_is_named(extra: Any, param: str, says: str) -> None:
    client, backend = setup()
    with pytest.raises(openai.BadRequestError) as info:
        await client.completions.create(model="auto", **extra)
    assert info.value.body["param"] == param and says in info.value.message  # type: ignore[index]
    assert backend.calls == []


async def test_a_stream_with_usage_ends_with_the_report_on_finish_and_usage_chunks() -> None:
    client, _ = setup()
    stream = await client.completions.create(
        model="auto",
        prompt="Say: ",
        stream=True,
        stream_options={"include_usage": True},
        extra_body=PINNED,
    )
    chunks = [c async for c in stream]
    last, finish = chunks[-1], chunks[-2]
    assert last.choices == [] and last.usage is not None and last.usage.completion_tokens == 1
    assert (last.model_extra or {})["ttc"]["policy"] == "single"
    assert finish.choices[0].finish_reason == "stop"
    assert (finish.model_extra or {})["ttc"]["policy"] == "single"
    assert len({c.created for c in chunks}) == 1
