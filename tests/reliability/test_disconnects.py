"""A client that leaves mid-stream or mid-call cancels the upstream call it started.

A real ``ttc serve`` over two ``FakeUpstream`` workers running on an event loop in a
background thread (so the test can read their counters): ``stall`` streams two tokens and then
waits, ``hang`` never answers. Each repeat, a client reads the first token of a stream and
closes the connection, and another gives up on a non-streamed call after 0.3 s.

What must hold: every upstream call is closed by the gateway (the fake sees its client leave),
every request is settled as its client leaving (``status="499"``, no error counted),
``ttc_requests_in_flight`` is back to 0, and the gateway logs no traceback for a client that
left (issue 12, item 6).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import httpx
import pytest

from bench.stats import percentile
from tests.reliability.fake_upstream import MODEL, FakeUpstream
from tests.reliability.harness import Gateway, Report, form, gateway

T = TypeVar("T")
Setup = tuple[Gateway, dict[str, FakeUpstream]]
GIVE_UP_S = 0.3  # the impatient client's read timeout on a non-streamed call


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    def run(coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, loop).result(10)

    fakes = {name: run(FakeUpstream(mode=name, die_after=2).start()) for name in ("stall", "hang")}
    tiers = {name: {"model": MODEL, "endpoints": [f.url]} for name, f in fakes.items()}
    config = {
        "tiers": tiers,
        "router": {"bands": [{"name": "all", "policy": "single"}], "probe": {"mode": "never"}},
        "server": {"log_level": "info"},
    }
    try:
        with gateway(config, tmp_path_factory.mktemp("disconnects")) as running:
            yield running, fakes
    finally:
        for fake in fakes.values():
            run(fake.close())
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


def body(model: str, stream: bool) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": stream}


def wait_for(check: Any, within_s: float = 5.0) -> float | None:
    """Seconds until ``check()`` holds, or None."""
    start = time.monotonic()
    while time.monotonic() - start < within_s:
        if check():
            return time.monotonic() - start
        time.sleep(0.005)
    return None


def leave_mid_stream(url: str, fake: FakeUpstream) -> float | None:
    aborted = fake.aborted_by_client
    with httpx.Client(base_url=url, trust_env=False, timeout=10) as client:
        with client.stream("POST", "/v1/chat/completions", json=body("stall", True)) as response:
            assert response.status_code == 200
            for line in response.iter_lines():
                if '"content": "x"' in line or '"content":"x"' in line:
                    break
    return wait_for(lambda: fake.aborted_by_client > aborted)


def leave_mid_call(url: str, fake: FakeUpstream) -> float | None:
    aborted, chats = fake.aborted_by_client, fake.chats
    with (
        httpx.Client(base_url=url, trust_env=False, timeout=GIVE_UP_S) as client,
        pytest.raises(httpx.ReadTimeout),
    ):
        client.post("/v1/chat/completions", json=body("hang", False))
    assert fake.chats > chats, "the call never reached the worker"
    return wait_for(lambda: fake.aborted_by_client > aborted)


def _ms(values: list[float]) -> dict[str, float | None]:
    def ms(q: float) -> float | None:
        found = percentile(values, q)
        return None if found is None else round(found * 1000, 1)

    return {"p50_ms": ms(50), "p99_ms": ms(99)}


def test_client_leaving_cancels_the_upstream_call(setup: Setup) -> None:
    gw, fakes = setup
    repeats = form().repeats
    left_before = gw.metric("ttc_requests_total", 'status="499"')
    errors_before = gw.metric("ttc_errors_total")
    streams = [leave_mid_stream(gw.url, fakes["stall"]) for _ in range(repeats)]
    calls = [leave_mid_call(gw.url, fakes["hang"]) for _ in range(repeats)]
    in_flight_zero = wait_for(lambda: gw.metric("ttc_requests_in_flight") == 0.0)
    left = gw.metric("ttc_requests_total", 'status="499"') - left_before
    errors = gw.metric("ttc_errors_total") - errors_before
    tracebacks = gw.log.read_text(errors="replace").count("Traceback")
    Report(
        "disconnects",
        {
            "repeats": repeats,
            "streams_not_cancelled": sum(s is None for s in streams),
            "calls_not_cancelled": sum(c is None for c in calls),
            "stream_cancel": _ms([s for s in streams if s is not None]),
            "call_cancel": _ms([c for c in calls if c is not None]),
            "in_flight_after": gw.metric("ttc_requests_in_flight"),
            "settled_as_left": left,
            "settled_as_errors": errors,
            "tracebacks_logged": tracebacks,
        },
    ).write()
    assert None not in streams, "a stream's upstream call outlived its client"
    assert None not in calls, "a call's upstream request outlived its client"
    assert in_flight_zero is not None, "ttc_requests_in_flight did not return to 0"
    # Each client that left is a 499 (billed as outcome "disconnect"), never an error, even
    # when its leaving breaks the upstream stream under a cancelled read.
    assert (left, errors) == (2 * repeats, 0)
    assert tracebacks == 0, f"{tracebacks} tracebacks logged for clients that left: {gw.log}"
