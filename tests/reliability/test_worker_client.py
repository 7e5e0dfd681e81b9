"""The data plane (``workers.client``): how every upstream answer and failure is translated,
timeouts, connection reuse and release.

The translation decides what the pool may retry: ``WorkerFailed`` (nothing was streamed; try
another worker), ``InvalidRequest`` (the client's fault: vLLM's message, no retry) or
``UpstreamError``. Parsing and translation run over ``Canned``, a transport with no socket
(``workers.transport``); what depends on the network (a refused connection, a reset, read
timeouts, keep-alive, closing a connection so vLLM aborts) runs over the real aiohttp
transport against ``FakeUpstream`` on loopback.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import aiohttp
import pytest

from core.backend import Completion, Delta
from core.errors import (
    InvalidRequest,
    TtcError,
    UnsupportedEndpoint,
    UpstreamAuthFailed,
    UpstreamError,
    UpstreamRateLimited,
    WorkerFailed,
)
from tests.reliability.fake_upstream import MODEL, TOKENS, FakeUpstream, eventually, refusing_url
from workers.client import WorkerClients, attempt_timeout
from workers.config import PoolConfig, TierConfig
from workers.pool import WorkerPool
from workers.transport import Answer, Exchange

BODY = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}
SECONDS = attempt_timeout(5.0, 2.0)


@dataclass
class Canned:
    """A transport answering every call with ``status`` and a body in ``parts``; with
    ``broken`` the connection breaks after them. ``sent`` holds the bodies it was given,
    ``complete`` whether each answer was read to its end when it was left."""

    status: int = 200
    parts: tuple[bytes, ...] = ()
    broken: bool = False
    sent: list[dict[str, Any]] = field(default_factory=list)
    complete: list[bool] = field(default_factory=list)
    urls: list[str] = field(default_factory=list)

    def post(
        self,
        url: str,
        body: dict[str, Any],
        timeout: aiohttp.ClientTimeout,
        headers: Mapping[str, str] | None = None,
    ) -> Exchange:
        self.sent.append(body)
        self.urls.append(url)
        return CannedExchange(self)


class CannedExchange:
    def __init__(self, canned: Canned) -> None:
        self.canned, self.status, self._left = canned, canned.status, list(canned.parts)
        self.headers: Mapping[str, str] = {}

    async def __aenter__(self) -> Answer:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.canned.complete.append(not self._left and not self.canned.broken)

    async def read(self) -> bytes:
        return b"".join([part async for part in self.chunks()])

    async def chunks(self) -> AsyncIterator[bytes]:
        while self._left:
            yield self._left.pop(0)
        if self.canned.broken:
            raise aiohttp.ClientPayloadError("connection reset")


def sse(*events: dict[str, Any] | str) -> tuple[bytes, ...]:
    """One SSE event per part, ``[DONE]`` for a string."""
    return tuple(
        b"data: " + (e.encode() if isinstance(e, str) else json.dumps(e).encode()) + b"\n\n"
        for e in events
    )


def token(text: str) -> dict[str, Any]:
    return {"model": MODEL, "choices": [{"index": 0, "delta": {"content": text}}]}


def over(canned: Canned) -> WorkerClients:
    return WorkerClients(max_connections=1, transport=canned)


@pytest.fixture
async def fake() -> AsyncIterator[FakeUpstream]:
    upstream = await FakeUpstream(token_delay_s=0.001).start()
    yield upstream
    await upstream.close()


@pytest.fixture
async def clients() -> AsyncIterator[WorkerClients]:
    made = WorkerClients(max_connections=8)
    yield made
    await made.close()


async def chat(clients: WorkerClients, url: str, read_s: float = 5.0) -> Completion:
    return await clients.get(url).chat(BODY, attempt_timeout(read_s, 2.0))


async def stream(clients: WorkerClients, url: str, got: list[Delta], read_s: float = 5.0) -> None:
    async for delta in clients.get(url).stream(BODY, attempt_timeout(read_s, 2.0)):
        got.append(delta)


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (503, WorkerFailed),
        (500, WorkerFailed),
        (400, InvalidRequest),
        (422, InvalidRequest),
        (409, UpstreamError),
    ],
)
async def test_an_error_status_is_translated_by_whose_fault_it_is(
    status: int, error: type[TtcError]
) -> None:
    body = json.dumps({"error": {"message": f"fake answered {status}"}}).encode()
    canned = Canned(status, (body,))
    with pytest.raises(error, match=f"fake answered {status}") as info:
        await chat(over(canned), "http://w")
    assert type(info.value) is error
    got: list[Delta] = []
    with pytest.raises(error, match=f"fake answered {status}"):
        await stream(over(canned), "http://w", got)
    assert got == [] and canned.complete == [True, True]


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (429, UpstreamRateLimited),
        (401, UpstreamAuthFailed),
        (403, UpstreamAuthFailed),
        (404, UnsupportedEndpoint),
        (405, UnsupportedEndpoint),
        (501, UnsupportedEndpoint),
    ],
)
async def test_statuses_that_are_nobodys_fault_keep_no_upstream_text(
    status: int, error: type[TtcError]
) -> None:
    """A rate limit, refused credentials or a missing endpoint: neither the worker's fault nor
    the body's (workers.statuses); the upstream's text is not kept (a 401's quotes the key)."""
    body = json.dumps({"error": {"message": f"fake answered {status}"}}).encode()
    canned = Canned(status, (body,))
    with pytest.raises(error) as info:
        await chat(over(canned), "http://w")
    assert type(info.value) is error and "fake answered" not in info.value.message
    got: list[Delta] = []
    with pytest.raises(error):
        await stream(over(canned), "http://w", got)
    assert got == [] and canned.complete == [True, True]


async def test_an_error_status_over_a_socket_keeps_vllms_message(
    fake: FakeUpstream, clients: WorkerClients
) -> None:
    fake.mode = "503"
    with pytest.raises(WorkerFailed, match="worker answered 503: fake answered 503"):
        await chat(clients, fake.url)


async def test_a_stream_asks_for_usage_and_keeps_the_callers_stream_options() -> None:
    canned = Canned(200, sse(token("a"), "[DONE]"))
    body = {**BODY, "stream_options": {"continuous_usage_stats": True}}
    got = [d async for d in over(canned).get("http://w").stream(body, SECONDS)]
    assert [d.text for d in got] == ["a"]
    assert canned.sent[0]["stream"] is True
    assert canned.sent[0]["stream_options"] == {
        "continuous_usage_stats": True,
        "include_usage": True,
    }


async def test_events_split_across_reads_are_parsed_whole_and_usage_ends_the_stream() -> None:
    whole = b"".join(
        sse(
            token("ab"),
            {"model": MODEL, "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 2}},
            "[DONE]",
        )
    )
    canned = Canned(200, tuple(whole[i : i + 7] for i in range(0, len(whole), 7)))
    got: list[Delta] = []
    await stream(over(canned), "http://w", got)
    assert [d.text for d in got] == ["ab", ""]
    assert got[-1].usage is not None and got[-1].usage.completion_tokens == 2
    assert canned.complete == [True]  # read to its end: the connection could be reused


async def test_a_refused_connection_is_worker_failed(clients: WorkerClients) -> None:
    dead = refusing_url()
    with pytest.raises(WorkerFailed, match="unreachable"):
        await chat(clients, dead)
    with pytest.raises(WorkerFailed, match="unreachable"):
        await stream(clients, dead, [])


async def test_an_answer_that_is_not_json_is_an_upstream_error() -> None:
    with pytest.raises(UpstreamError, match="malformed completion"):
        await chat(over(Canned(200, (b"<html>not json</html>",))), "http://w")


@pytest.mark.parametrize(
    ("canned", "message"),
    [
        (Canned(200, sse(token("x"), token("y")), broken=True), "stream broke"),
        (
            Canned(200, sse(token("x"), token("y"), {"error": {"message": "engine overloaded"}})),
            "stream error: engine overloaded",
        ),
        (Canned(200, sse(token("x"), token("y"))), "ended without \\[DONE\\]"),
        (Canned(200, (*sse(token("x"), token("y")), b"data: {not json\n\n")), "malformed"),
    ],
)
async def test_a_stream_going_wrong_after_output_is_an_upstream_error(
    canned: Canned, message: str
) -> None:
    got: list[Delta] = []
    with pytest.raises(UpstreamError, match=message) as info:
        await stream(over(canned), "http://w", got)
    assert type(info.value) is UpstreamError
    assert "".join(d.text for d in got) == "xy"


async def test_a_worker_dying_mid_stream_is_an_upstream_error_after_its_output(
    fake: FakeUpstream, clients: WorkerClients
) -> None:
    """A real reset (the fake aborts its socket), as when the worker's process is killed."""
    fake.mode = "die"
    got: list[Delta] = []
    with pytest.raises(UpstreamError, match="stream broke"):
        await stream(clients, fake.url, got)
    assert "".join(d.text for d in got) == "xxx"


async def test_silence_before_the_answer_is_worker_failed_and_after_it_an_upstream_error(
    fake: FakeUpstream, clients: WorkerClients
) -> None:
    """The read timeout bounds every wait for bytes; the fake's silent connection is closed."""
    fake.mode, fake.delay_s = "slow", 5.0
    with pytest.raises(WorkerFailed, match="Timeout"):
        await chat(clients, fake.url, read_s=0.2)
    with pytest.raises(WorkerFailed, match="Timeout"):
        await stream(clients, fake.url, [], read_s=0.2)
    fake.mode, fake.die_after = "stall", 2
    got: list[Delta] = []
    with pytest.raises(UpstreamError, match="stream broke: .*Timeout"):
        await stream(clients, fake.url, got, read_s=0.2)
    assert "".join(d.text for d in got) == "xx"
    assert await eventually(lambda: fake.aborted_by_client == 1)


async def test_calls_and_streams_reuse_one_keep_alive_connection(
    fake: FakeUpstream, clients: WorkerClients
) -> None:
    """The stream's last (empty) chunk comes after ``[DONE]``, on its own: it is read too, or
    the connection could not be reused."""
    fake.token_delay_s = 0.01
    for _ in range(3):
        assert (await chat(clients, fake.url)).choices[0].text == "x" * TOKENS
        got: list[Delta] = []
        await stream(clients, fake.url, got)
        assert "".join(d.text for d in got) == "x" * TOKENS
        assert got[-1].usage is not None and got[-1].usage.completion_tokens == TOKENS
    assert (fake.finished, fake.connections, fake.aborted_by_client) == (6, 1, 0)


async def test_a_consumer_that_stops_reading_closes_the_upstream_connection(
    fake: FakeUpstream,
) -> None:
    """As when a policy stops early or a client goes away: vLLM must see the disconnect."""
    fake.token_delay_s = 0.05
    pool = WorkerPool({"t": TierConfig(model=MODEL, endpoints=(fake.url,))}, PoolConfig())
    deltas = pool.stream_chat("t", BODY)
    assert isinstance(deltas, AsyncGenerator)
    async for delta in deltas:
        if delta.text:
            break
    await deltas.aclose()
    assert await eventually(lambda: fake.aborted_by_client == 1)
    assert fake.finished == 0 and pool.workers["t"][0].in_flight == 0
    await pool.close()


async def test_a_prompt_body_is_a_text_completion_and_a_messages_body_a_chat() -> None:
    text = {
        "model": MODEL,
        "choices": [
            {
                "index": 0,
                "text": " Paris",
                "finish_reason": "stop",
                "logprobs": {"tokens": [" Paris"], "token_logprobs": [-0.1]},
            }
        ],
        "usage": {"prompt_tokens": 4, "completion_tokens": 1},
    }
    canned = Canned(parts=(json.dumps(text).encode(),))
    client = over(canned).get("http://w:1")
    done = await client.chat(
        {"prompt": "Capital of France:", "logprobs": True, "top_logprobs": 2}, SECONDS
    )
    assert canned.urls == ["http://w:1/v1/completions"]
    assert canned.sent[0] == {"prompt": "Capital of France:", "logprobs": 2}
    assert done.choices[0].text == " Paris" and done.choices[0].token_logprobs == (-0.1,)
    chat = Canned(parts=(json.dumps({"model": MODEL, "choices": []}).encode(),))
    await over(chat).get("http://w:1").chat(BODY, SECONDS)
    assert chat.urls == ["http://w:1/v1/chat/completions"]
