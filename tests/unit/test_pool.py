"""``WorkerPool`` over fake workers (an httpx ``MockTransport``): choice, retries, breaker, cancel.

Timeouts are not exercised here (a mock transport enforces none); tests/reliability does that
over real sockets.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from prometheus_client import generate_latest

from policies.errors import DeadlineExceeded, InvalidRequest, UpstreamUnavailable
from server.metrics import Metrics
from workers.balance import rendezvous_order
from workers.breaker import BreakerState
from workers.config import BreakerConfig, DiscoveryConfig, PoolConfig, TierConfig
from workers.pool import StreamInterrupted, WorkerPool
from workers.signals import LoadSignal

A, B = "http://a:8000", "http://b:8000"
MSG = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}


def sse(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


def chunk(text: str | None = None, finish: str | None = None, role: bool = False) -> bytes:
    delta: dict[str, Any] = {"role": "assistant", "content": ""} if role else {"content": text}
    return sse({"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})


class Fleet:
    """Fake vLLM workers keyed by host. ``mode[host]``: ok, 503, refuse, 400, hang, die_after_N."""

    def __init__(self) -> None:
        self.mode: dict[str, str] = {"a": "ok", "b": "ok"}
        self.healthy: dict[str, bool] = {"a": True, "b": True}
        self.calls: Counter[str] = Counter()
        self.cancelled: Counter[str] = Counter()

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        host, path = request.url.host, request.url.path
        if path == "/health":
            return httpx.Response(200 if self.healthy[host] else 503)
        if path == "/v1/models":
            return httpx.Response(200, json={"data": [{"id": "small"}]})
        self.calls[host] += 1
        mode = self.mode[host]
        if mode == "refuse":
            raise httpx.ConnectError("refused", request=request)
        if mode in ("503", "400"):
            return httpx.Response(int(mode), json={"error": {"message": f"{mode} from {host}"}})
        if mode == "hang":
            try:
                await asyncio.Event().wait()
            finally:
                self.cancelled[host] += 1
        if json.loads(request.content).get("stream"):
            return httpx.Response(200, content=self.stream(host, mode))
        return httpx.Response(200, json={
            "model": "small", "usage": {"prompt_tokens": 3, "completion_tokens": 1},
            "choices": [{"index": 0, "message": {"content": host}, "finish_reason": "stop"}],
        })  # fmt: skip

    async def stream(self, host: str, mode: str) -> AsyncIterator[bytes]:
        yield chunk(role=True)
        tokens = int(mode.removeprefix("die_after_")) if mode.startswith("die_after_") else 3
        for _ in range(tokens):
            yield chunk(host)
        if mode.startswith("die_after_"):
            raise httpx.ReadError("connection reset")
        yield chunk(finish="stop")
        yield sse({"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": tokens}})
        yield b"data: [DONE]\n\n"


def make_pool(fleet: Fleet, urls: tuple[str, ...] = (A, B), **config: Any) -> WorkerPool:
    settings = {"affinity": "caller", "breaker": BreakerConfig(failure_threshold=1,
                open_base_s=0.05), **config}  # fmt: skip
    tier = TierConfig(model="small", endpoints=urls)
    return WorkerPool({"small": tier}, PoolConfig(**settings),
                      transport=httpx.MockTransport(fleet))  # fmt: skip


def key_for(url: str, urls: tuple[str, ...] = (A, B)) -> str:
    """An affinity key whose rendezvous choice is ``url``."""
    want = urls.index(url)
    return next(k for k in map(str, range(1000)) if rendezvous_order(k, urls)[0] == want)


@pytest.fixture
def fleet() -> Fleet:
    return Fleet()


async def test_503_and_refused_connections_are_retried_on_another_worker(fleet: Fleet) -> None:
    for failure in ("503", "refuse"):
        fleet.mode["a"] = failure
        pool = make_pool(fleet)
        done = await pool.chat("small", MSG, affinity=key_for(A))
        assert done.choices[0].text == "b"
        assert pool.counters.retries == {"small": 1} and pool.counters.failures == {A: 1}
        await pool.close()
    assert fleet.calls == {"a": 2, "b": 2}


async def test_whole_tier_down_is_503_with_retry_after_and_bounded_attempts(fleet: Fleet) -> None:
    fleet.mode = {"a": "503", "b": "refuse"}
    pool = make_pool(fleet, max_attempts=5, retry_after_s=7)
    with pytest.raises(UpstreamUnavailable) as info:
        await pool.chat("small", MSG)
    assert info.value.retry_after == 7
    assert fleet.calls == {"a": 1, "b": 1}  # each worker once, never the same one twice
    await pool.close()


async def test_client_error_is_neither_retried_nor_blamed(fleet: Fleet) -> None:
    fleet.mode["a"] = "400"
    pool = make_pool(fleet)
    with pytest.raises(InvalidRequest, match="400 from a"):
        await pool.chat("small", MSG, affinity=key_for(A))
    assert fleet.calls == {"a": 1}
    assert pool.workers["small"][0].breaker.state is BreakerState.CLOSED
    await pool.close()


async def test_ejected_worker_is_skipped_then_readmitted_by_a_health_check(fleet: Fleet) -> None:
    fleet.mode["a"] = "503"
    pool = make_pool(fleet)
    await pool.check_health()
    a = pool.workers["small"][0]
    for _ in range(4):
        await pool.chat("small", MSG, affinity=key_for(A))
    assert fleet.calls == {"a": 1, "b": 4} and a.breaker.ejections == 1
    assert a.healthy is False and pool.ready() == {"small": True}
    fleet.mode["a"] = "ok"
    await asyncio.sleep(0.06)  # the 50 ms backoff
    await pool.check_health()
    assert a.healthy is True
    assert (await pool.chat("small", MSG, affinity=key_for(A))).choices[0].text == "a"
    await pool.close()


async def test_half_open_admits_one_trial_call_when_nothing_else_is_left(fleet: Fleet) -> None:
    fleet.mode["a"] = "503"
    pool = make_pool(fleet, urls=(A,))
    with pytest.raises(UpstreamUnavailable):
        await pool.chat("small", MSG)
    with pytest.raises(UpstreamUnavailable):  # ejected: not even tried
        await pool.chat("small", MSG)
    assert fleet.calls == {"a": 1}
    fleet.mode["a"] = "ok"
    await asyncio.sleep(0.06)
    assert (await pool.chat("small", MSG)).choices[0].text == "a"  # the trial
    assert pool.workers["small"][0].breaker.state is BreakerState.CLOSED
    await pool.close()


async def test_stream_failing_before_output_is_retried_invisibly(fleet: Fleet) -> None:
    fleet.mode["a"] = "die_after_0"  # sends the role chunk, then the connection drops
    pool = make_pool(fleet)
    deltas = [d async for d in pool.stream_chat("small", MSG, affinity=key_for(A))]
    assert "".join(d.text for d in deltas) == "bbb"
    assert sum(1 for d in deltas if d.raw.get("delta", {}).get("role")) == 1  # b's role only
    assert pool.counters.retries == {"small": 1}
    await pool.close()


async def test_stream_failing_after_output_raises_with_usage_so_far(fleet: Fleet) -> None:
    fleet.mode["a"] = "die_after_3"
    pool = make_pool(fleet)
    seen: list[str] = []
    with pytest.raises(StreamInterrupted) as info:
        async for delta in pool.stream_chat("small", MSG, affinity=key_for(A)):
            seen.append(delta.text)
    assert "".join(seen) == "aaa" and fleet.calls == {"a": 1}  # never replayed elsewhere
    assert info.value.usage.completion_tokens == 3 and info.value.status == 502
    assert "usage so far" in info.value.message
    await pool.close()


async def test_prefix_affinity_keeps_a_prompt_on_one_worker_and_spreads_prompts() -> None:
    fleet = Fleet()
    pool = make_pool(fleet, affinity="prefix")
    system = {"role": "system", "content": "Shared instructions. " * 200}
    for i in range(6):  # other request ids, other questions, a probe's continuation
        body = {"messages": [system, {"role": "user", "content": f"q{i}"}]}
        if i % 2:
            body["messages"].append({"role": "assistant", "content": "The answer is"})
        await pool.chat("small", body, affinity=f"chatcmpl-{i}")
    assert sorted(fleet.calls.values()) == [6]
    fleet.calls.clear()
    for i in range(30):
        await pool.chat("small", {"messages": [{"role": "user", "content": f"question {i}"}]})
    assert min(fleet.calls["a"], fleet.calls["b"]) >= 5
    await pool.close()


async def test_busier_worker_by_vllm_signal_is_avoided(fleet: Fleet) -> None:
    pool = make_pool(fleet, affinity="none")
    now = asyncio.get_running_loop().time()
    pool.signals.update(A, LoadSignal(running=8, waiting=4, kv_usage=0.9, at=now))
    pool.signals.update(B, LoadSignal(running=1, waiting=0, kv_usage=0.1, at=now))
    for _ in range(10):
        await pool.chat("small", MSG)
    assert fleet.calls == {"b": 10}
    await pool.close()


async def test_stale_signal_counts_as_unknown_not_idle(fleet: Fleet) -> None:
    pool = make_pool(fleet, affinity="none", signal_max_age_s=2.0)
    now = asyncio.get_running_loop().time()
    pool.signals.update(A, LoadSignal(running=1, waiting=0, kv_usage=0.1, at=now))
    pool.signals.update(B, LoadSignal(running=0, waiting=0, kv_usage=0.0, at=now - 10))
    for _ in range(5):
        await pool.chat("small", MSG)
    assert fleet.calls == {"a": 5}
    await pool.close()


async def test_cancelled_call_frees_the_worker_without_blaming_it(fleet: Fleet) -> None:
    fleet.mode["a"] = "hang"
    pool = make_pool(fleet, urls=(A,))
    task = asyncio.create_task(pool.chat("small", MSG))
    a = pool.workers["small"][0]
    while fleet.calls["a"] == 0:
        await asyncio.sleep(0.01)
    assert a.in_flight == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0)
    assert fleet.cancelled == {"a": 1}  # the upstream request was abandoned, not left running
    assert a.in_flight == 0 and a.breaker.state is BreakerState.CLOSED
    assert pool.counters.failures == {}
    await pool.close()


async def test_call_waiting_on_a_worker_that_health_checks_eject_moves_on(fleet: Fleet) -> None:
    """A hung worker sends no reset: only its failing health checks reveal it."""
    fleet.mode["a"] = "hang"
    pool = make_pool(fleet)
    task = asyncio.create_task(pool.chat("small", MSG, affinity=key_for(A)))
    while fleet.calls["a"] == 0:
        await asyncio.sleep(0.01)
    fleet.healthy["a"] = False
    await pool.check_health()
    assert (await asyncio.wait_for(task, 1.0)).choices[0].text == "b"
    assert fleet.cancelled == {"a": 1}
    await pool.close()


async def test_retry_never_starts_after_the_tier_deadline(fleet: Fleet) -> None:
    class Clock:
        now = 0.0

        def __call__(self) -> float:
            return self.now

    clock = Clock()
    original = fleet.__call__

    async def slow_503(request: httpx.Request) -> httpx.Response:
        clock.now += 11.0  # the first attempt used up the tier's 10 s
        return await original(request)

    fleet.mode["a"] = "503"
    tier = TierConfig(model="small", endpoints=(A, B), request_timeout_s=10.0)
    pool = WorkerPool({"small": tier}, PoolConfig(affinity="caller"), clock=clock,
                      transport=httpx.MockTransport(slow_503))  # fmt: skip
    with pytest.raises(DeadlineExceeded):
        await pool.chat("small", MSG, affinity=key_for(A))
    assert fleet.calls == {"a": 1}
    await pool.close()


async def test_dns_discovery_adds_and_removes_workers_and_survives_a_failed_lookup() -> None:
    answers: list[list[str] | None] = [["10.0.0.1", "10.0.0.2"], ["10.0.0.2", "10.0.0.3"], None]

    async def resolver(host: str, port: int) -> list[str]:
        assert (host, port) == ("vllm-small.ttc.svc.cluster.local", 8000)
        answer = answers.pop(0)
        if answer is None:
            raise OSError("Name or service not known")
        return answer

    async def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"data": [{"id": "small"}]})

    found = DiscoveryConfig(dns="vllm-small.ttc.svc.cluster.local", interval_s=60)
    tier = TierConfig(model="small", endpoints=(A,), discovery=found)
    pool = WorkerPool({"small": tier}, PoolConfig(), resolver=resolver,
                      transport=httpx.MockTransport(handler))  # fmt: skip
    await pool.start()

    def urls() -> list[str]:
        return [w.url for w in pool.workers["small"]]

    assert urls() == [A, "http://10.0.0.1:8000", "http://10.0.0.2:8000"]
    assert all(w.healthy for w in pool.workers["small"])  # the new ones were checked at once
    kept = pool.workers["small"][2]
    await pool.discover()
    assert urls() == [A, "http://10.0.0.2:8000", "http://10.0.0.3:8000"]
    assert pool.workers["small"][1] is kept  # same worker object: breaker and counters kept
    await pool.discover()  # the lookup fails: nothing changes
    assert urls() == [A, "http://10.0.0.2:8000", "http://10.0.0.3:8000"]
    await pool.close()


async def test_metrics_show_per_worker_calls_health_and_ejections(fleet: Fleet) -> None:
    fleet.mode["a"] = "503"
    pool = make_pool(fleet)
    await pool.check_health()
    await pool.chat("small", MSG, affinity=key_for(A))
    metrics = Metrics()
    metrics.watch_pool(pool)
    text = generate_latest(metrics.registry).decode()
    for line in (
        f'ttc_worker_requests_total{{tier="small",worker="{A}"}} 1.0',
        f'ttc_worker_requests_total{{tier="small",worker="{B}"}} 1.0',
        f'ttc_worker_healthy{{tier="small",worker="{A}"}} 0.0',
        f'ttc_worker_ejections_total{{tier="small",worker="{A}"}} 1.0',
        f'ttc_worker_breaker_state{{state="open",tier="small",worker="{A}"}} 1.0',
        f'ttc_worker_upstream_duration_seconds_count{{tier="small",worker="{B}"}} 1.0',
        'ttc_upstream_retries_total{tier="small"} 1.0',
    ):
        assert line in text
    await pool.close()


def test_a_tier_may_have_only_discovery() -> None:
    tier = TierConfig(model="m", discovery=DiscoveryConfig(dns="vllm.ns.svc.cluster.local"))
    assert tier.urls() == ()
    with pytest.raises(ValueError, match="discovery"):
        TierConfig(model="m")
