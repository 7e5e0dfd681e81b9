"""Redis paused (``CLIENT PAUSE``) and Redis stopped and restarted, under mixed load.

The gateway (a real ``ttc serve``) shares rate limits and token budgets through a Redis of the
test's own (``redis-server`` on a port in 8600-8699, no persistence; the shared Redis on 6379
is never touched), so every request calls Redis. The workers are fake.

What must hold: the gateway fails open, zero failed requests before, during and after either
fault; the faults did reach it (Redis errors counted); once Redis answers again the breaker
closes within its open time plus a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest
import redis

from tests.reliability.harness import (
    Gateway,
    Report,
    fast_upstream,
    form,
    gateway,
    kill,
    port,
    single_tier,
    spawn,
)
from tests.reliability.load import Load, phases

OPEN_S = 2.0  # the Redis breaker's open time (default 5 s): shorter keeps the case short


class PrivateRedis:
    """A ``redis-server`` subprocess the test may pause, stop and start again on one port."""

    def __init__(self, folder: Path) -> None:
        self.port, self.folder = port(), folder
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        command = [
            "redis-server",
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ]
        self.proc = spawn(command, self.folder / "redis.log")
        client = redis.Redis(port=self.port, socket_timeout=1)
        for _ in range(100):
            with contextlib.suppress(redis.RedisError):
                if client.ping():
                    break
            time.sleep(0.05)
        client.close()

    def stop(self) -> None:
        if self.proc is not None:
            kill(self.proc)

    def pause(self, seconds: float) -> None:
        with redis.Redis(port=self.port, socket_timeout=1) as client:
            client.execute_command("CLIENT", "PAUSE", int(seconds * 1000))


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Gateway, PrivateRedis]]:
    folder = tmp_path_factory.mktemp("redis-faults")
    store = PrivateRedis(folder)
    store.start()
    upstream, upstream_proc = fast_upstream("fast", folder)
    config = single_tier(
        "fast",
        "fast",
        upstream,
        redis={"url": f"redis://127.0.0.1:{store.port}/0", "open_s": OPEN_S},
        limits={"rpm": 1_000_000, "tpm": 100_000_000},  # never reached: Redis on every request
    )
    try:
        with gateway(config, folder) as running:
            yield running, store
    finally:
        kill(upstream_proc)
        store.stop()


async def closed_again(gw: Gateway, since: float, limit_s: float) -> float | None:
    """Seconds from ``since`` until the gateway's Redis breaker is closed."""
    while time.monotonic() - since < limit_s:
        if await asyncio.to_thread(gw.metric, "ttc_redis_breaker_open") == 0.0:
            return round(time.monotonic() - since, 3)
        await asyncio.sleep(0.1)
    return None


async def under_load(
    gw: Gateway, case: str, fault: Callable[[], Awaitable[None]], restore: Callable[[], None]
) -> None:
    """before / during ``fault`` / after ``restore``: figures and the fail-open assertions."""
    run = form()
    errors_before = gw.metric("ttc_redis_errors_total")
    load = Load(gw.url, "fast", run.clients)
    marks = [("before", time.monotonic())]
    load.start()
    await asyncio.sleep(run.phase_s)
    marks.append(("during", time.monotonic()))
    await fault()
    await asyncio.to_thread(restore)
    back = time.monotonic()
    marks.append(("after", back))
    recovered = await closed_again(gw, back, OPEN_S + 5.0)
    await asyncio.sleep(run.phase_s)
    by_phase = phases(await load.stop(), marks)
    errors = gw.metric("ttc_redis_errors_total") - errors_before
    Report(
        case,
        {
            "clients": run.clients,
            "fault_s": run.phase_s,
            "redis_errors": errors,
            "breaker_open_s": OPEN_S,
            "breaker_closed_after_s": recovered,
            **by_phase,
        },
    ).write()
    assert errors > 0, "the fault never reached the gateway"
    assert all(p["failed"] == 0 for p in by_phase.values()), by_phase
    assert recovered is not None and recovered <= OPEN_S + 1.0, recovered


async def test_redis_client_pause(setup: tuple[Gateway, PrivateRedis]) -> None:
    gw, store = setup
    seconds = form().phase_s

    async def pause() -> None:
        await asyncio.to_thread(store.pause, seconds)
        await asyncio.sleep(seconds)

    await under_load(gw, "redis-pause", pause, lambda: None)


async def test_redis_stopped_and_restarted(setup: tuple[Gateway, PrivateRedis]) -> None:
    gw, store = setup

    async def stop() -> None:
        await asyncio.to_thread(store.stop)
        await asyncio.sleep(form().phase_s)

    await under_load(gw, "redis-restart", stop, store.start)
