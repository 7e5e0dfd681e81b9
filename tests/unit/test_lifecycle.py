"""The request lifecycle, in process: one settlement per request, whichever way it ends.

The app runs with a scripted ``Backend`` in place of the worker pool (``create_app(...,
backend=...)``) and is driven by the official ``openai`` SDK over an ASGI transport. What is
asserted is the gateway's own bookkeeping: probe tokens in the usage the client sees, the
in-flight gauge back at zero, each request counted once with its status, deadlines.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx2
import openai
import pytest
from fastapi import FastAPI

from core.backend import Completion, Delta
from core.contract import prompt_estimate
from core.errors import UpstreamUnavailable
from server.app import create_app
from server.config import Settings, settings_from_dict
from server.context import AppContext
from tests.fakes import ScriptedBackend
from tests.unit.test_router_probe import LogprobBackend

QUESTION: Any = [{"role": "user", "content": "What is the capital of France?"}]


def settings(**router: Any) -> Settings:
    return settings_from_dict(
        {
            # profile smollm2: the tier can call tools (requests with tools reach the backend)
            "tiers": {
                "small": {"model": "m", "endpoints": ["http://127.0.0.1:9"], "profile": "smollm2"}
            },
            "server": {"request_timeout_s": 0.5, "stream_keepalive_s": 0.05},
            "router": router,
        }
    )


def client_for(app: FastAPI) -> openai.AsyncOpenAI:
    # httpx2: the HTTP client this openai SDK is built on
    transport = httpx2.ASGITransport(app=app)
    http = httpx2.AsyncClient(transport=transport, base_url="http://gateway")
    return openai.AsyncOpenAI(
        base_url="http://gateway/v1", api_key="x", http_client=http, max_retries=0
    )


def context(app: FastAPI) -> AppContext:
    ctx: AppContext = app.state.ttc
    return ctx


def counted(app: FastAPI, status: str) -> float:
    m = context(app).metrics
    return sum(
        s.value
        for metric in m.requests.collect()
        for s in metric.samples
        if s.name.endswith("_total") and s.labels["status"] == status
    )


def in_flight(app: FastAPI) -> float:
    return float(context(app).metrics.in_flight._value.get())


def probing_backend() -> LogprobBackend:
    return LogprobBackend(respond=lambda tier, body: ["Paris"])


async def test_the_probe_is_billed_in_the_usage_of_a_plain_request() -> None:
    app = create_app(settings(probe={"mode": "always"}), backend=probing_backend())
    reply = await client_for(app).chat.completions.create(
        model="auto", messages=QUESTION, extra_body={"ttc": {"policy": "single"}}
    )
    assert reply.choices[0].message.content == "Paris"
    assert reply.usage is not None and reply.usage.completion_tokens == 2  # probe + sample
    kinds = {d["kind"] for d in reply.usage.model_extra["ttc_details"]}  # type: ignore[index]
    assert kinds == {"probe", "sample"}
    assert (in_flight(app), counted(app, "ok")) == (0, 1)
    totals = await context(app).shared.stats.snapshot(1)  # the router's windowed statistics
    assert sum(s.requests for s in totals.values()) == 1  # recorded once, by one path
    assert sum(s.tokens for s in totals.values()) == reply.usage.total_tokens


async def test_the_probe_is_billed_in_the_usage_of_a_stream() -> None:
    app = create_app(settings(probe={"mode": "always"}), backend=probing_backend())
    stream = await client_for(app).chat.completions.create(
        model="auto",
        messages=QUESTION,
        stream=True,
        stream_options={"include_usage": True},
        extra_body={"ttc": {"policy": "single"}},
    )
    chunks = [chunk async for chunk in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip() == "Paris"
    usage = chunks[-1].usage
    assert usage is not None and usage.completion_tokens == 2
    assert (in_flight(app), counted(app, "ok")) == (0, 1)


class ProbeThatNeverAnswers(ScriptedBackend):
    """A probe of the small tier that hangs (a stuck worker, a lost node)."""

    async def chat(
        self, tier: str, body: dict[str, Any], *, affinity: str | None = None
    ) -> Completion:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


async def test_a_hanging_probe_ends_at_the_request_deadline_with_a_504() -> None:
    app = create_app(
        settings(probe={"mode": "always"}), backend=ProbeThatNeverAnswers(lambda t, b: ["x"])
    )
    with pytest.raises(openai.APIStatusError) as info:
        await asyncio.wait_for(
            client_for(app).chat.completions.create(model="auto", messages=QUESTION), 5.0
        )
    assert info.value.status_code == 504
    assert "while routing" in info.value.message
    assert (in_flight(app), counted(app, "504")) == (0, 1)


@dataclass
class HangsAfterFirstWord(ScriptedBackend):
    async def chat(
        self, tier: str, body: dict[str, Any], *, affinity: str | None = None
    ) -> Completion:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def stream_chat(
        self, tier: str, body: dict[str, Any], *, affinity: str | None = None
    ) -> AsyncIterator[Delta]:
        yield Delta(text="first")
        await asyncio.Event().wait()


def hangs() -> HangsAfterFirstWord:
    return HangsAfterFirstWord(lambda t, b: ["x"])


async def test_a_policy_past_the_deadline_is_a_504_counted_once() -> None:
    app = create_app(settings(probe={"mode": "never"}), backend=hangs())
    with pytest.raises(openai.APIStatusError) as info:
        await asyncio.wait_for(
            client_for(app).chat.completions.create(
                model="auto", messages=QUESTION, extra_body={"ttc": {"policy": "single"}}
            ),
            5.0,
        )
    assert info.value.status_code == 504
    assert (in_flight(app), counted(app, "504"), counted(app, "ok")) == (0, 1, 0)


async def test_a_stream_past_the_deadline_ends_with_an_error_event_and_is_settled() -> None:
    backend = hangs()
    app = create_app(settings(probe={"mode": "never"}), backend=backend)
    stream = await client_for(app).chat.completions.create(
        model="auto",
        messages=QUESTION,
        stream=True,
        extra_body={"ttc": {"policy": "single"}},
    )
    with pytest.raises(openai.APIError) as info:
        async for _ in stream:
            pass
    assert "deadline" in info.value.message
    assert (in_flight(app), counted(app, "504")) == (0, 1)
    # the word streamed before the deadline was generated upstream, after the worker took in
    # the prompt (which it never reported): both are billed
    m = context(app).metrics
    billed = m.unfinished_tokens.labels("error")._value.get()
    assert billed == 1 + prompt_estimate({"messages": QUESTION})


class NoWorker(ScriptedBackend):
    async def stream_chat(
        self, tier: str, body: dict[str, Any], *, affinity: str | None = None
    ) -> AsyncIterator[Delta]:
        raise UpstreamUnavailable("no healthy worker for tier 'small'", retry_after=3)
        yield Delta()  # pragma: no cover


async def test_a_stream_that_fails_before_its_first_event_keeps_its_http_status() -> None:
    app = create_app(settings(probe={"mode": "never"}), backend=NoWorker(lambda t, b: ["x"]))
    with pytest.raises(openai.APIStatusError) as info:
        await client_for(app).chat.completions.create(
            model="auto",
            messages=QUESTION,
            stream=True,
            extra_body={"ttc": {"policy": "single"}},
        )
    assert info.value.status_code == 503
    assert info.value.response.headers["retry-after"] == "3"
    assert (in_flight(app), counted(app, "503")) == (0, 1)


async def test_a_refused_body_is_counted_and_leaves_nothing_in_flight() -> None:
    app = create_app(settings(), backend=ScriptedBackend(lambda t, b: ["x"]))
    with pytest.raises(openai.BadRequestError):
        await client_for(app).chat.completions.create(model="auto", messages=[])
    assert (in_flight(app), counted(app, "400")) == (0, 1)


class Buggy(ScriptedBackend):
    """A backend with a bug: stands in for any unexpected exception inside the gateway."""

    async def chat(
        self, tier: str, body: dict[str, Any], *, affinity: str | None = None
    ) -> Completion:
        raise KeyError("a bug")


async def test_an_internal_error_is_a_settled_500_and_the_connection_stays_usable() -> None:
    app = create_app(settings(probe={"mode": "never"}), backend=Buggy(lambda t, b: ["x"]))
    client = client_for(app)
    with pytest.raises(openai.InternalServerError) as info:
        await client.chat.completions.create(
            model="auto", messages=QUESTION, extra_body={"ttc": {"policy": "single"}}
        )
    assert info.value.status_code == 500
    expected = {
        "message": "internal error in the gateway",
        "type": "internal_error",
        "param": None,
        "code": "internal_error",
    }
    assert info.value.body == expected
    assert (in_flight(app), counted(app, "500")) == (0, 1)
    errors = context(app).metrics.errors.labels("500", "internal_error")._value.get()
    assert errors == 1
