"""Both workers SIGKILLed under load, then back: 503s with ``Retry-After``, then service.

A real ``ttc serve`` over two ``fake_worker`` processes (a real vLLM worker cannot be killed
and restarted in seconds on this machine). ``tests/reliability/test_recovery.py`` checks the
same contract in process; this case checks it end to end, over sockets, with killed processes.

What must hold (issue 12): while no worker is up, every failed request is a 503 carrying a
``Retry-After``; after both workers return, the first request succeeds within two health
intervals, and no ``Retry-After`` pointed past that bound; after recovery nothing fails.
"""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

from tests.reliability.fake_upstream import MODEL
from tests.reliability.harness import Report, fake_worker, form, gateway, kill, port, single_tier
from tests.reliability.load import Load, Outcome, phases

INTERVAL_S = 1.0  # the pool's health interval
OUTAGE_S = 5.0  # long enough for a breaker's backoff to grow past the interval (1, 2, 4 s)


def first_success_after(outcomes: list[Outcome], t: float) -> float | None:
    return min((o.started + o.latency_s for o in outcomes if o.ok and o.started >= t), default=None)


def late_hints(outcomes: list[Outcome], back: float) -> list[tuple[float, str | None]]:
    """503s whose ``Retry-After`` is missing or points past ``back`` + two intervals."""
    late = []
    for o in outcomes:
        if o.result != "HTTP 503":
            continue
        hint = float(o.retry_after) if o.retry_after else None
        if hint is None or o.started + hint > max(o.started, back) + 2 * INTERVAL_S:
            late.append((round(o.started - back, 2), o.retry_after))
    return late


async def test_both_workers_down_then_back(tmp_path: Path) -> None:
    run = form()
    ports = [port(), port()]
    workers = {p: await asyncio.to_thread(fake_worker, p, tmp_path) for p in ports}
    urls = [f"http://127.0.0.1:{p}" for p in ports]
    pool = {"health_interval_s": INTERVAL_S, "affinity": "none"}
    try:
        with gateway(single_tier("t", MODEL, *urls, pool=pool), tmp_path) as gw:
            load = Load(gw.url, "t", 2)  # one client streaming first, one calling first
            marks = [("before", time.monotonic())]
            load.start()
            await asyncio.sleep(run.phase_s)
            marks.append(("during", time.monotonic()))
            for proc in workers.values():
                kill(proc, signal.SIGKILL)
            await asyncio.sleep(OUTAGE_S)
            for worker_port in ports:
                workers[worker_port] = await asyncio.to_thread(fake_worker, worker_port, tmp_path)
            back = time.monotonic()
            marks.append(("after", back))
            await asyncio.sleep(max(run.phase_s, 2 * INTERVAL_S + 1.0))
            outcomes = await load.stop()
    finally:
        for proc in workers.values():
            kill(proc)
    served = first_success_after(outcomes, back)
    outage = [o for o in outcomes if marks[1][1] <= o.started < back]
    hints = sorted({o.retry_after for o in outage if o.result == "HTTP 503"}, key=str)
    late = late_hints(outcomes, back)
    recovery = None if served is None else round(served - back, 3)
    Report(
        "workers-outage",
        {
            "health_interval_s": INTERVAL_S,
            "outage_s": OUTAGE_S,
            "recovery_s": recovery,
            "retry_after_values": hints,
            "late_or_missing_retry_after": len(late),
            **phases(outcomes, marks),
        },
    ).write()
    failed = [o for o in outcomes if not o.ok]
    assert all(o.result == "HTTP 503" or o.started < marks[1][1] for o in failed), failed
    assert recovery is not None and recovery <= 2 * INTERVAL_S, recovery
    assert not late, f"503s with a missing or late Retry-After (s after return, hint): {late}"
    assert all(o.ok for o in outcomes if served is not None and o.started > served)
