"""``WorkerPool`` over fake workers on real sockets: choice, retries, breaker, cancellation,
connection reuse.

The workers are ``FakeUpstream`` servers (tests/reliability/fake_upstream.py) on loopback, so
the data plane (aiohttp) and the health checks (httpx) run for real; each fake answers with its
own letter, so a test sees which worker answered. A refused connection is a port nobody
listens on. Timeouts are exercised in tests/reliability.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

import httpx
import pytest
from prometheus_client import generate_latest

from core.errors import DeadlineExceeded, InvalidRequest, UpstreamUnavailable
from server.metrics import Metrics
from tests.reliability.fake_upstream import MODEL, TOKENS, FakeUpstream, eventually, refusing_url
from workers.balance import rendezvous_order
from workers.breaker import BreakerState
from workers.config import BreakerConfig, DiscoveryConfig, PoolConfig, TierConfig
from workers.pool import StreamInterrupted, WorkerPool
from workers.signals import WorkerLoad

MSG = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
Fleet = tuple[FakeUpstream, FakeUpstream]


@pytest.fixture
async def fleet() -> AsyncIterator[Fleet]:
    """Workers ``a`` and ``b``, answering "aaaaaaaa" and "bbbbbbbb"."""
    a = await FakeUpstream(text="a", token_delay_s=0.001).start()
    b = await FakeUpstream(text="b", token_delay_s=0.001).start()
    yield a, b
    await a.close()
    await b.close()


def make_pool(*urls: str, **config: Any) -> WorkerPool:
    settings = {
        "affinity": "caller",
        "breaker": BreakerConfig(failure_threshold=1, open_base_s=0.05),
        **config,
    }
    return WorkerPool({"small": TierConfig(model=MODEL, endpoints=urls)}, PoolConfig(**settings))


def key_for(url: str, urls: Sequence[str]) -> str:
    """An affinity key whose rendezvous choice among ``urls`` is ``url``."""
    want = list(urls).index(url)
    return next(k for k in map(str, range(1000)) if rendezvous_order(k, urls)[0] == want)


async def test_503_and_refused_connections_are_retried_on_another_worker(fleet: Fleet) -> None:
    a, b = fleet
    a.mode = "503"
    for first in (a.url, refusing_url()):
        pool = make_pool(first, b.url)
        done = await pool.chat("small", MSG, affinity=key_for(first, (first, b.url)))
        assert done.choices[0].text == "b" * TOKENS
        assert pool.counters.retries == {"small": 1} and pool.counters.failures == {first: 1}
        await pool.close()
    assert (a.chats, b.chats) == (1, 2)


async def test_whole_tier_down_is_503_with_retry_after_and_bounded_attempts(fleet: Fleet) -> None:
    a, _ = fleet
    a.mode = "503"
    dead = refusing_url()
    pool = make_pool(a.url, dead, max_attempts=5, retry_after_s=7)
    with pytest.raises(UpstreamUnavailable) as info:
        await pool.chat("small", MSG)
    assert info.value.retry_after == 1  # both breakers allow a trial within 50 ms
    assert "last failure:" in info.value.message and a.url not in info.value.message
    assert a.chats == 1  # each worker once, never the same one twice
    assert pool.counters.failures == {a.url: 1, dead: 1}
    await pool.close()


async def test_client_error_is_neither_retried_nor_blamed(fleet: Fleet) -> None:
    a, b = fleet
    a.mode = "400"
    pool = make_pool(a.url, b.url)
    with pytest.raises(InvalidRequest, match="fake answered 400"):
        await pool.chat("small", MSG, affinity=key_for(a.url, (a.url, b.url)))
    assert (a.chats, b.chats) == (1, 0)
    assert pool.workers["small"][0].breaker.state is BreakerState.CLOSED
    await pool.close()


async def test_ejected_worker_is_skipped_then_readmitted_by_a_health_check(fleet: Fleet) -> None:
    """``a`` goes down (calls and ``/health`` answer 503), then comes back: the first passing
    check re-admits it at once, without waiting out its backoff."""
    a, b = fleet
    a.mode = "503"
    pool = make_pool(a.url, b.url, breaker=BreakerConfig(failure_threshold=1, open_base_s=30))
    await pool.check_health()
    worker = pool.workers["small"][0]
    key = key_for(a.url, (a.url, b.url))
    for _ in range(4):
        await pool.chat("small", MSG, affinity=key)
    assert (a.chats, b.chats) == (1, 4) and worker.breaker.ejections == 1
    assert worker.healthy is False and pool.ready() == {"small": True}
    a.health = "503"
    await pool.check_health()  # down, as its checks now say
    a.mode, a.health = "ok", "ok"
    await pool.check_health()  # 30 s of backoff left: the check re-admits it anyway
    assert worker.healthy is True
    assert (await pool.chat("small", MSG, affinity=key)).choices[0].text == "a" * TOKENS
    await pool.close()


async def test_a_worker_that_passes_checks_but_fails_calls_waits_for_its_trial(
    fleet: Fleet,
) -> None:
    """Checks say nothing about a worker whose calls fail: only a trial after the backoff
    re-admits it, so it is not put back every health interval."""
    a, _ = fleet
    a.mode = "503"
    pool = make_pool(a.url)
    worker = pool.workers["small"][0]
    with pytest.raises(UpstreamUnavailable, match="last failure: worker answered 503"):
        await pool.chat("small", MSG)
    await pool.check_health()
    assert worker.healthy is False and worker.breaker.retry_in > 0
    a.mode = "ok"
    await asyncio.sleep(0.06)  # the 50 ms backoff
    assert (await pool.chat("small", MSG)).choices[0].text == "a" * TOKENS  # the trial
    assert worker.breaker.state is BreakerState.CLOSED
    await pool.close()


async def test_half_open_admits_one_trial_call_when_nothing_else_is_left(fleet: Fleet) -> None:
    a, _ = fleet
    a.mode = "503"
    pool = make_pool(a.url)
    with pytest.raises(UpstreamUnavailable):
        await pool.chat("small", MSG)
    with pytest.raises(UpstreamUnavailable):  # ejected: not even tried
        await pool.chat("small", MSG)
    assert a.chats == 1
    a.mode = "ok"
    await asyncio.sleep(0.06)
    assert (await pool.chat("small", MSG)).choices[0].text == "a" * TOKENS  # the trial
    assert pool.workers["small"][0].breaker.state is BreakerState.CLOSED
    await pool.close()


async def test_stream_failing_before_output_is_retried_invisibly(fleet: Fleet) -> None:
    a, b = fleet
    a.mode, a.die_after = "die", 0  # sends the role chunk, then the connection is reset
    pool = make_pool(a.url, b.url)
    key = key_for(a.url, (a.url, b.url))
    deltas = [d async for d in pool.stream_chat("small", MSG, affinity=key)]
    assert "".join(d.text for d in deltas) == "b" * TOKENS
    assert sum(1 for d in deltas if d.raw.get("delta", {}).get("role")) == 1  # b's role only
    assert pool.counters.retries == {"small": 1} and a.died == 1
    await pool.close()


async def test_stream_failing_after_output_raises_with_usage_so_far(fleet: Fleet) -> None:
    """A stream with logprobs cannot be continued elsewhere (tests/unit/test_engines_resume.py
    has the streams that can)."""
    a, b = fleet
    a.mode, a.die_after = "die", 3
    pool = make_pool(a.url, b.url)
    seen: list[str] = []
    body = {**MSG, "logprobs": True}
    with pytest.raises(StreamInterrupted) as info:
        async for delta in pool.stream_chat("small", body, affinity=key_for(a.url, (a.url, b.url))):
            seen.append(delta.text)
    assert "".join(seen) == "aaa" and (a.chats, b.chats) == (1, 0)  # never replayed elsewhere
    assert info.value.usage.completion_tokens == 3 and info.value.status == 502
    assert "usage so far" in info.value.message
    await pool.close()


async def test_prefix_affinity_keeps_a_prompt_on_one_worker_and_spreads_prompts(
    fleet: Fleet,
) -> None:
    a, b = fleet
    pool = make_pool(a.url, b.url, affinity="prefix")
    system = {"role": "system", "content": "Shared instructions. " * 200}
    for i in range(6):  # other request ids, other questions, a probe's continuation
        body = {"messages": [system, {"role": "user", "content": f"q{i}"}]}
        if i % 2:
            body["messages"].append({"role": "assistant", "content": "The answer is"})
        await pool.chat("small", body, affinity=f"chatcmpl-{i}")
    assert sorted([a.chats, b.chats]) == [0, 6]
    a.chats = b.chats = 0
    for i in range(30):
        await pool.chat("small", {"messages": [{"role": "user", "content": f"question {i}"}]})
    assert min(a.chats, b.chats) >= 5
    await pool.close()


async def test_busier_worker_by_vllm_signal_is_avoided(fleet: Fleet) -> None:
    a, b = fleet
    pool = make_pool(a.url, b.url, affinity="none")
    now = asyncio.get_running_loop().time()
    pool.signals.update(a.url, WorkerLoad(running=8, waiting=4, kv_usage=0.9, at=now))
    pool.signals.update(b.url, WorkerLoad(running=1, waiting=0, kv_usage=0.1, at=now))
    for _ in range(10):
        await pool.chat("small", MSG)
    assert (a.chats, b.chats) == (0, 10)
    await pool.close()


async def test_stale_signal_counts_as_unknown_not_idle(fleet: Fleet) -> None:
    a, b = fleet
    pool = make_pool(a.url, b.url, affinity="none", signal_max_age_s=2.0)
    now = asyncio.get_running_loop().time()
    pool.signals.update(a.url, WorkerLoad(running=1, waiting=0, kv_usage=0.1, at=now))
    pool.signals.update(b.url, WorkerLoad(running=0, waiting=0, kv_usage=0.0, at=now - 10))
    for _ in range(5):
        await pool.chat("small", MSG)
    assert (a.chats, b.chats) == (5, 0)
    await pool.close()


async def test_cancelled_call_frees_the_worker_without_blaming_it(fleet: Fleet) -> None:
    a, _ = fleet
    a.mode = "hang"
    pool = make_pool(a.url)
    task = asyncio.create_task(pool.chat("small", MSG))
    worker = pool.workers["small"][0]
    assert await eventually(lambda: a.chats == 1)
    assert worker.in_flight == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # The upstream request was abandoned (its connection closed), not left running.
    assert await eventually(lambda: a.aborted_by_client == 1)
    assert worker.in_flight == 0 and worker.breaker.state is BreakerState.CLOSED
    assert pool.counters.failures == {}
    await pool.close()


async def test_call_waiting_on_a_worker_that_health_checks_eject_moves_on(fleet: Fleet) -> None:
    """A hung worker sends no reset: only its failing health checks reveal it."""
    a, b = fleet
    a.mode = "hang"
    pool = make_pool(a.url, b.url)
    task = asyncio.create_task(pool.chat("small", MSG, affinity=key_for(a.url, (a.url, b.url))))
    assert await eventually(lambda: a.chats == 1)
    a.health = "503"
    await pool.check_health()
    assert (await asyncio.wait_for(task, 1.0)).choices[0].text == "b" * TOKENS
    assert await eventually(lambda: a.aborted_by_client == 1)
    await pool.close()


async def test_a_client_leaving_as_checks_eject_the_worker_stays_a_cancellation(
    fleet: Fleet,
) -> None:
    """Both cancel the same task: the client's wins, nothing is retried for nobody."""
    a, b = fleet
    a.mode = "hang"
    pool = make_pool(a.url, b.url)
    task = asyncio.create_task(pool.chat("small", MSG, affinity=key_for(a.url, (a.url, b.url))))
    assert await eventually(lambda: a.chats == 1)
    pool.workers["small"][0].abandon_calls()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert b.chats == 0 and pool.workers["small"][0].waiting == set()
    await pool.close()


async def test_retry_never_starts_after_the_tier_deadline(fleet: Fleet) -> None:
    class Clock:
        now = 0.0

        def __call__(self) -> float:
            return self.now

    clock = Clock()

    def first_attempt_takes_11_s() -> None:
        clock.now += 11.0  # the first attempt used up the tier's 10 s

    a, b = fleet
    a.mode, a.on_chat = "503", first_attempt_takes_11_s
    tier = TierConfig(model=MODEL, endpoints=(a.url, b.url), request_timeout_s=10.0)
    pool = WorkerPool({"small": tier}, PoolConfig(affinity="caller"), clock=clock)
    with pytest.raises(DeadlineExceeded):
        await pool.chat("small", MSG, affinity=key_for(a.url, (a.url, b.url)))
    assert (a.chats, b.chats) == (1, 0)
    await pool.close()


async def test_dns_discovery_adds_and_removes_workers_and_survives_a_failed_lookup() -> None:
    """Only the control plane runs here: health checks go through an httpx mock transport."""
    answers: list[list[str] | None] = [["10.0.0.1", "10.0.0.2"], ["10.0.0.2", "10.0.0.3"], None]

    async def resolver(host: str, port: int) -> list[str]:
        assert (host, port) == ("vllm-small.ttc.svc.cluster.local", 8000)
        answer = answers.pop(0)
        if answer is None:
            raise OSError("Name or service not known")
        return answer

    async def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"data": [{"id": "small"}]})

    static = "http://a:8000"
    found = DiscoveryConfig(dns="vllm-small.ttc.svc.cluster.local", interval_s=60)
    tier = TierConfig(model="small", endpoints=(static,), discovery=found)
    pool = WorkerPool(
        {"small": tier}, PoolConfig(), resolver=resolver, transport=httpx.MockTransport(handler)
    )
    await pool.start()

    def urls() -> list[str]:
        return [w.url for w in pool.workers["small"]]

    assert urls() == [static, "http://10.0.0.1:8000", "http://10.0.0.2:8000"]
    assert all(w.healthy for w in pool.workers["small"])  # the new ones were checked at once
    kept = pool.workers["small"][2]
    await pool.discover()
    assert urls() == [static, "http://10.0.0.2:8000", "http://10.0.0.3:8000"]
    assert pool.workers["small"][1] is kept  # same worker object: breaker and counters kept
    await pool.discover()  # the lookup fails: nothing changes
    assert urls() == [static, "http://10.0.0.2:8000", "http://10.0.0.3:8000"]
    await pool.close()


async def test_metrics_show_per_worker_calls_health_and_ejections(fleet: Fleet) -> None:
    a, b = fleet
    a.mode = "503"
    pool = make_pool(a.url, b.url)
    await pool.check_health()
    await pool.chat("small", MSG, affinity=key_for(a.url, (a.url, b.url)))
    metrics = Metrics()
    metrics.watch_pool(pool)
    text = generate_latest(metrics.registry).decode()
    for line in (
        f'ttc_worker_requests_total{{tier="small",worker="{a.url}"}} 1.0',
        f'ttc_worker_requests_total{{tier="small",worker="{b.url}"}} 1.0',
        f'ttc_worker_healthy{{tier="small",worker="{a.url}"}} 0.0',
        f'ttc_worker_ejections_total{{tier="small",worker="{a.url}"}} 1.0',
        f'ttc_worker_breaker_state{{state="open",tier="small",worker="{a.url}"}} 1.0',
        f'ttc_worker_upstream_duration_seconds_count{{tier="small",worker="{b.url}"}} 1.0',
        'ttc_upstream_retries_total{tier="small"} 1.0',
    ):
        assert line in text
    await pool.close()


def test_a_tier_may_have_only_discovery() -> None:
    tier = TierConfig(model="m", discovery=DiscoveryConfig(dns="vllm.ns.svc.cluster.local"))
    assert tier.urls() == ()
    with pytest.raises(ValueError, match="discovery"):
        TierConfig(model="m")
