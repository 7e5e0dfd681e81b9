"""Both workers down, then back: how soon the gateway serves again, and what its 503s said.

The gateway runs in process (the real app and worker pool, its lifespan entered by hand) over
two ``FakeUpstream`` workers, which go down (connections refused, open ones reset) and come
back on the same ports when the test says so. A client polls every 50 ms throughout.

What must hold: after both workers return, the first request succeeds within two health
intervals, and every 503 before it carried a ``Retry-After`` no later than that: the time to
the next health check, rounded up to the header's whole seconds, never a fixed 5 s.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import httpx
import pytest

from server.app import create_app
from server.config import settings_from_dict
from tests.reliability.fake_upstream import MODEL, FakeUpstream

INTERVAL_S = 1.0  # health interval
OUTAGE_S = 5.0  # long enough for the breakers' backoff to grow past the interval (1, 2, 4 s)
BODY = {"model": "t", "messages": [{"role": "user", "content": "hi"}], "ttc": {"policy": "single"}}


@dataclass
class Log:
    """Each answer the polling client got: (time, status, Retry-After or None)."""

    answers: list[tuple[float, int, int | None]] = field(default_factory=list)

    def first_ok_after(self, t: float) -> float | None:
        return next((at for at, status, _ in self.answers if at >= t and status == 200), None)

    def unavailable(self) -> list[tuple[float, int | None]]:
        return [(at, hint) for at, status, hint in self.answers if status == 503]


@pytest.fixture
async def fleet() -> AsyncIterator[tuple[FakeUpstream, FakeUpstream]]:
    a, b = await FakeUpstream().start(), await FakeUpstream().start()
    yield a, b
    await a.close()
    await b.close()


async def poll(client: httpx.AsyncClient, log: Log, stop: asyncio.Event) -> None:
    while not stop.is_set():
        response = await client.post("/v1/chat/completions", json=BODY)
        hint = response.headers.get("retry-after")
        log.answers.append((time.monotonic(), response.status_code, hint and int(hint)))
        await asyncio.sleep(0.05)


async def test_both_workers_back_serve_within_two_health_intervals_as_the_503s_said(
    fleet: tuple[FakeUpstream, FakeUpstream], record_property: Callable[[str, object], None]
) -> None:
    a, b = fleet
    settings = settings_from_dict(
        {
            "tiers": {"t": {"model": MODEL, "endpoints": [a.url, b.url]}},
            "pool": {"health_interval_s": INTERVAL_S, "health_timeout_s": 0.5},
            "router": {"bands": [{"name": "all", "policy": "single"}], "probe": {"mode": "never"}},
        }
    )
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    log, stop = Log(), asyncio.Event()
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://gateway") as client,
    ):
        polling = asyncio.create_task(poll(client, log, stop))
        await asyncio.sleep(0.5)
        await a.stop()
        await b.stop()
        await asyncio.sleep(OUTAGE_S)
        await a.start()
        await b.start()
        back = time.monotonic()
        await asyncio.sleep(2 * INTERVAL_S + 0.5)
        stop.set()
        await polling
    served = log.first_ok_after(back)
    assert served is not None, log.answers
    recovery = served - back
    during = [(at, hint) for at, hint in log.unavailable() if at < served]
    assert during, "the outage produced no 503"
    record_property("recovery_s", round(recovery, 3))  # figures for the reliability report
    record_property("retry_after_max_s", max(hint or 0 for _, hint in during))
    assert recovery <= 2 * INTERVAL_S, f"served {recovery:.2f} s after the workers returned"
    for at, hint in during:
        assert hint is not None and 1 <= hint <= math.ceil(INTERVAL_S)  # the next check
        assert at + hint <= max(at, back) + 2 * INTERVAL_S  # never past the recovery bound
    assert all(status == 200 for at, status, _ in log.answers if at > served)
