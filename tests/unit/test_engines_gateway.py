"""A hosted tier behind the whole gateway, in process: ``/ready`` and the error a client gets
when the upstream refuses the key, and the key nowhere in what the gateway says or logs.

The upstream is ``HostedFake`` (tests/hosted_fake.py): a hosted API cannot be reached from
here, and one that refuses the key while quoting it back is the condition under test.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import openai
import pytest
from fastapi import FastAPI

from server.app import create_app
from server.config import settings_from_dict
from tests.hosted_fake import ANSWER, MODEL, HostedFake

KEY = "sk-gw-test-9d8c7b6a5f4e3d2c1b0a"
WRONG = "sk-gw-wrong-1a2b3c4d5e6f7a8b9c0d"
PINNED: Any = {"ttc": {"policy": "single"}}


@contextlib.asynccontextmanager
async def gateway(
    fake: HostedFake, key: str, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[httpx2.AsyncClient]:
    monkeypatch.setenv("TTC_TEST_HOSTED_KEY", key)
    settings = settings_from_dict(
        {
            "tiers": {
                "large": {
                    "model": MODEL,
                    "engine": "openai",
                    "endpoints": [fake.url + "/v1"],
                    "api_key_env": "TTC_TEST_HOSTED_KEY",
                }
            },
            "router": {"probe": {"mode": "never"}},
        }
    )
    app: FastAPI = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(transport=transport, base_url="http://gw") as http:
            yield http


async def test_a_refused_key_is_a_tier_not_ready_and_a_502_that_never_quotes_it(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    fake = await HostedFake(key=KEY).start()
    async with gateway(fake, WRONG, monkeypatch) as http:
        ready = await http.get("/ready")
        assert ready.status_code == 503
        assert ready.json()["reasons"] == {
            "large": "its upstream refused the gateway's credentials (401)"
        }
        body = {"model": "large", "messages": [{"role": "user", "content": "hi"}], **PINNED}
        answers = [
            await http.post("/v1/chat/completions", json=body),
            await http.post("/v1/chat/completions", json={**body, "stream": True}),
        ]
        metrics = (await http.get("/metrics")).text
    await fake.close()
    assert fake.refused >= 3  # the check, the call, the stream: each quoted the key back
    for answer in answers:
        assert answer.status_code == 502
        assert answer.json()["error"]["code"] == "upstream_auth_failed"
        assert "refused the gateway's credentials" in answer.json()["error"]["message"]
    texts = [ready.text, metrics, caplog.text, *(a.text for a in answers)]
    assert not any(WRONG in text for text in texts)
    assert not any(WRONG in str(r.args) for r in caplog.records)


async def test_a_hosted_tier_answers_through_the_sdk_stream_and_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = await HostedFake(key=KEY).start()
    async with gateway(fake, KEY, monkeypatch) as http:
        assert (await http.get("/ready")).status_code == 200
        sdk = openai.AsyncOpenAI(base_url="http://gw/v1", api_key="unused", http_client=http)
        messages: Any = [{"role": "user", "content": "hi"}]
        done = await sdk.chat.completions.create(
            model="large", messages=messages, max_tokens=8, extra_body=PINNED
        )
        assert done.choices[0].message.content == ANSWER
        assert done.usage is not None and done.usage.completion_tokens == 4
        stream = await sdk.chat.completions.create(
            model="large",
            messages=messages,
            max_tokens=8,
            stream=True,
            stream_options={"include_usage": True},
            extra_body=PINNED,
        )
        chunks = [chunk async for chunk in stream]
    await fake.close()
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == ANSWER
    usage = [c.usage for c in chunks if c.usage is not None]
    assert usage and usage[-1].completion_tokens == 4  # billed from the upstream's count
    assert all("max_tokens" not in b and b["max_completion_tokens"] == 8 for b in fake.bodies)
