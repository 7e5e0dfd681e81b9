"""The data plane (``workers.client``, aiohttp) against ``FakeUpstream`` on real sockets: how
every upstream failure is translated, timeouts, connection reuse and release.

The translation decides what the pool may retry: ``WorkerFailed`` (nothing was streamed; try
another worker), ``InvalidRequest`` (the client's fault: vLLM's message, no retry) or
``UpstreamError``.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator

import pytest

from core.backend import Completion, Delta
from core.errors import InvalidRequest, TtcError, UpstreamError, WorkerFailed
from tests.reliability.fake_upstream import MODEL, TOKENS, FakeUpstream, eventually, refusing_url
from workers.client import WorkerClients, attempt_timeout
from workers.config import PoolConfig, TierConfig
from workers.pool import WorkerPool

BODY = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}
SECONDS = attempt_timeout(5.0, 2.0)


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
    [("503", WorkerFailed), ("429", WorkerFailed), ("400", InvalidRequest),
     ("422", InvalidRequest), ("404", UpstreamError)],
)  # fmt: skip
async def test_an_error_status_is_translated_by_whose_fault_it_is(
    fake: FakeUpstream, clients: WorkerClients, status: str, error: type[TtcError]
) -> None:
    fake.mode = status
    with pytest.raises(error, match=f"fake answered {status}") as info:
        await chat(clients, fake.url)
    assert type(info.value) is error
    got: list[Delta] = []
    with pytest.raises(error, match=f"fake answered {status}"):
        await stream(clients, fake.url, got)
    assert got == []


async def test_a_refused_connection_is_worker_failed(clients: WorkerClients) -> None:
    dead = refusing_url()
    with pytest.raises(WorkerFailed, match="unreachable"):
        await chat(clients, dead)
    with pytest.raises(WorkerFailed, match="unreachable"):
        await stream(clients, dead, [])


async def test_an_answer_that_is_not_json_is_an_upstream_error(
    fake: FakeUpstream, clients: WorkerClients
) -> None:
    fake.mode = "garbage"
    with pytest.raises(UpstreamError, match="malformed completion"):
        await chat(clients, fake.url)


@pytest.mark.parametrize(
    ("mode", "message"),
    [("die", "stream broke"), ("error_event", "stream error: engine overloaded"),
     ("no_done", "ended without \\[DONE\\]")],
)  # fmt: skip
async def test_a_stream_going_wrong_after_output_is_an_upstream_error(
    fake: FakeUpstream, clients: WorkerClients, mode: str, message: str
) -> None:
    fake.mode = mode
    got: list[Delta] = []
    with pytest.raises(UpstreamError, match=message) as info:
        await stream(clients, fake.url, got)
    assert type(info.value) is UpstreamError
    assert "".join(d.text for d in got) == "x" * (3 if mode == "die" else TOKENS)


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
