"""What the pool logs as workers start, fail and return, and what its 503s say.

A newcomer reads the log at start-up: a launched worker still loading its model is *starting*
(INFO), not ejected; only a worker that was up and went down is a warning. Coming back (by a
health check or a trial call) is INFO. Workers are ``FakeUpstream`` servers on loopback.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import pytest

from core.errors import UpstreamUnavailable
from tests.reliability.fake_upstream import MODEL, FakeUpstream
from workers.config import BreakerConfig, PoolConfig, TierConfig
from workers.pool import WorkerPool

MSG = {"messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
async def fake() -> AsyncIterator[FakeUpstream]:
    upstream = await FakeUpstream().start()
    yield upstream
    await upstream.close()


def pool_of(fake: FakeUpstream, base_s: float = 30.0) -> WorkerPool:
    breaker = BreakerConfig(failure_threshold=1, open_base_s=base_s)
    return WorkerPool(
        {"t": TierConfig(model=MODEL, endpoints=(fake.url,))}, PoolConfig(breaker=breaker)
    )


def lines(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str]]:
    found = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "ttc.workers"]
    caplog.clear()
    return found


async def test_a_worker_warming_up_is_starting_and_only_a_worker_that_was_up_is_a_warning(
    fake: FakeUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "ttc.workers")
    pool = pool_of(fake)
    fake.health = "503"  # a launched vLLM loading its model
    await pool.check_health()
    await pool.check_health()
    assert lines(caplog) == [
        (logging.INFO, f"worker {fake.url} of tier t starting (not answering yet)")
    ]
    fake.health = "ok"
    await pool.check_health()
    assert lines(caplog) == [(logging.INFO, f"worker {fake.url} of tier t is up")]
    fake.health = "503"  # it was up; now it is down
    await pool.check_health()
    assert lines(caplog) == [
        (logging.WARNING, f"worker {fake.url} of tier t ejected: health check failed")
    ]
    fake.health = "ok"
    await pool.check_health()
    assert lines(caplog) == [
        (logging.INFO, f"worker {fake.url} of tier t re-admitted: its health check passed")
    ]
    await pool.close()


async def test_readmission_by_a_trial_call_is_logged(
    fake: FakeUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "ttc.workers")
    pool = pool_of(fake, base_s=0.05)
    await pool.check_health()
    fake.mode = "500"
    with pytest.raises(UpstreamUnavailable):
        await pool.chat("t", MSG)
    fake.mode = "ok"
    await asyncio.sleep(0.06)  # the backoff; its checks pass, so only a trial re-admits it
    await pool.chat("t", MSG)
    assert (
        logging.INFO,
        f"worker {fake.url} of tier t re-admitted: a trial call succeeded",
    ) in lines(caplog)
    await pool.close()


@pytest.mark.parametrize(
    ("mode", "said"),
    [
        ("500", "worker answered 500: fake answered 500"),
        ("garbage", "worker sent a malformed completion"),
    ],
)
async def test_a_503_says_what_the_worker_did_and_names_no_address(
    fake: FakeUpstream, mode: str, said: str
) -> None:
    pool = pool_of(fake)
    fake.mode = mode
    for _ in range(2):  # the failed call itself, then the worker it ejected
        with pytest.raises(UpstreamUnavailable) as info:
            await pool.chat("t", MSG)
        assert f"(last failure: {said})" in info.value.message
        assert fake.url.split("//")[1] not in info.value.message
    assert fake.chats == 1
    await pool.close()
