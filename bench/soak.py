"""``ttc bench soak``: a gateway under steady mixed load for minutes, watched for leaks.

A ``ttc serve`` subprocess (policy ``single``) runs in front of ``bench.fast_upstream``, so the
gateway itself is what is measured. ``clients`` closed-loop connections alternate streamed and
non-streamed chat requests until the time is up, while a sampler reads the gateway's resident
memory (``VmRSS``) and open file descriptors from ``/proc`` every ``sample_every_s`` seconds.
The report: RSS and fds at the start of the load, the end and the peak; requests, errors by
reason, p50/p99 latency overall and in the first and last minute; ``ttc_requests_in_flight``
after the load (0 unless something leaked).
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml
from rich.console import Console
from rich.progress import Progress, TimeElapsedColumn

from bench import processes
from bench.loadgen import _FAILURES, Connection, Target
from bench.stats import percentile

MODEL = "fast"


@dataclass(frozen=True)
class Options:
    minutes: float = 10.0
    clients: int = 4
    sample_every_s: float = 5.0
    port: int = 0  # the gateway's; 0: any free port
    upstream_port: int = 0


@dataclass(frozen=True)
class Sample:
    at_s: float
    rss_bytes: int
    fds: int
    requests: int
    errors: int


@dataclass
class Tally:
    """Every request's start time (s since the load began), latency and outcome."""

    latencies: list[tuple[float, float]] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)

    def failed(self, reason: str) -> None:
        self.errors[reason] = self.errors.get(reason, 0) + 1

    @property
    def requests(self) -> int:
        return len(self.latencies) + sum(self.errors.values())


def rss_bytes(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    found = re.search(r"^VmRSS:\s+(\d+) kB", status, re.M)
    return int(found.group(1)) * 1024 if found else 0


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


async def client(
    targets: tuple[Target, Target], index: int, until: float, origin: float, tally: Tally
) -> None:
    """One connection sending back to back, alternating stream and non-stream."""
    connection: Connection | None = None
    turn = index
    while time.perf_counter() < until:
        target = targets[turn % 2]
        turn += 1
        started = time.perf_counter()
        try:
            connection = connection or await Connection.open(target)
            sample = await connection.send(target, started)
        except _FAILURES as exc:
            tally.failed(type(exc).__name__)
            if connection is not None:
                connection.close()
            connection = None
            await asyncio.sleep(0.05)  # 50 ms: back off rather than spin on a dead gateway
            continue
        if sample.ok:
            tally.latencies.append((started - origin, sample.latency_s))
        else:
            tally.failed(sample.failure or "failed")
    if connection is not None:
        connection.close()


async def sampler(
    pid: int,
    every_s: float,
    until: float,
    origin: float,
    tally: Tally,
    samples: list[Sample],
    progress: Progress,
) -> None:
    task = progress.add_task("soak", total=until - origin)
    while True:
        now = time.perf_counter()
        sample = Sample(
            round(now - origin, 1),
            rss_bytes(pid),
            open_fds(pid),
            tally.requests,
            sum(tally.errors.values()),
        )
        samples.append(sample)
        progress.update(
            task,
            completed=min(now, until) - origin,
            description=(
                f"{sample.requests} requests, {sample.errors} errors, "
                f"RSS {sample.rss_bytes / 2**20:.1f} MiB, {sample.fds} fds"
            ),
        )
        if now >= until:
            return
        await asyncio.sleep(min(every_s, max(0.0, until - now)))


async def drive(
    url: str, pid: int, options: Options, console: Console
) -> tuple[Tally, list[Sample]]:
    def body(stream: bool) -> dict[str, Any]:
        return {
            "model": MODEL,
            "messages": [{"role": "user", "content": "What is 2+2?"}],
            "max_tokens": 16,
            "stream": stream,
        }

    targets = (Target(url, body(False), {}), Target(url, body(True), {}))
    tally, samples = Tally(), list[Sample]()
    origin = time.perf_counter()
    until = origin + options.minutes * 60
    with Progress("{task.description}", TimeElapsedColumn(), console=console) as progress:
        await asyncio.gather(
            sampler(pid, options.sample_every_s, until, origin, tally, samples, progress),
            *(client(targets, i, until, origin, tally) for i in range(options.clients)),
        )
    return tally, samples


def _ms(values: list[float], q: float) -> float | None:
    found = percentile(values, q)
    return None if found is None else round(found * 1000, 2)


def latency(
    latencies: list[tuple[float, float]], since: float = 0.0, until: float = float("inf")
) -> dict[str, float | None]:
    chosen = [lat for at, lat in latencies if since <= at < until]
    return {"p50_ms": _ms(chosen, 50), "p99_ms": _ms(chosen, 99)}


def _mib(size: int) -> float:
    return round(size / 2**20, 1)


def summarize(
    options: Options, tally: Tally, samples: list[Sample], in_flight: float
) -> dict[str, Any]:
    first, last = samples[0], samples[-1]
    rss = [s.rss_bytes for s in samples]
    fds = [s.fds for s in samples]
    end_s = options.minutes * 60
    return {
        "options": asdict(options),
        "requests": tally.requests,
        "errors": sum(tally.errors.values()),
        "errors_by_reason": tally.errors,
        "requests_per_s": round(tally.requests / max(last.at_s, 1e-9), 1),
        "latency": latency(tally.latencies),
        "latency_first_minute": latency(tally.latencies, 0.0, 60.0),
        "latency_last_minute": latency(tally.latencies, max(0.0, end_s - 60.0)),
        "rss_mib": {
            "start": _mib(first.rss_bytes),
            "end": _mib(last.rss_bytes),
            "peak": _mib(max(rss)),
            "growth_pct": round(100 * (last.rss_bytes / first.rss_bytes - 1), 2),
        },
        "fds": {"start": first.fds, "end": last.fds, "peak": max(fds)},
        "in_flight_after": in_flight,
        "samples": [asdict(s) for s in samples],
    }


def in_flight(url: str) -> float:
    text = httpx.get(url + "/metrics", trust_env=False, timeout=5).text
    found = re.search(r"^ttc_requests_in_flight (\S+)$", text, re.M)
    return float(found.group(1)) if found else float("nan")


def _start_gateway(upstream: str, port: int, workdir: Path) -> processes.Started:
    config = processes.gateway_config(MODEL, upstream, port)
    (workdir / "gateway.yaml").write_text(yaml.safe_dump(config))
    serve = [sys.executable, "-m", "ttc.cli", "serve", "--config", str(workdir / "gateway.yaml")]
    return processes.start("ttc-gateway", serve, f"http://127.0.0.1:{port}", "/ready", workdir)


def run(options: Options, console: Console) -> dict[str, Any]:
    """Start the fast upstream and a gateway, soak it, stop both; the report."""
    with tempfile.TemporaryDirectory(prefix="ttc-soak-") as folder:
        workdir = Path(folder)
        upstream_port = options.upstream_port or processes.free_port()
        command = [
            sys.executable,
            "-m",
            "bench.fast_upstream",
            "--port",
            str(upstream_port),
            "--model",
            MODEL,
        ]
        upstream_url = f"http://127.0.0.1:{upstream_port}"
        upstream = processes.start("fast-upstream", command, upstream_url, "/health", workdir)
        try:
            gateway = _start_gateway(upstream.url, options.port or processes.free_port(), workdir)
            try:
                tally, samples = asyncio.run(drive(gateway.url, gateway.pid, options, console))
                return summarize(options, tally, samples, in_flight(gateway.url))
            finally:
                processes.stop(gateway)
        finally:
            processes.stop(upstream)


def print_report(console: Console, report: dict[str, Any]) -> None:
    rss, fds = report["rss_mib"], report["fds"]
    console.print(
        f"{report['requests']} requests ({report['requests_per_s']}/s), {report['errors']} errors"
        f" {report['errors_by_reason'] or ''}; latency p50 {report['latency']['p50_ms']} ms,"
        f" p99 {report['latency']['p99_ms']} ms (first minute p50"
        f" {report['latency_first_minute']['p50_ms']}, last minute p50"
        f" {report['latency_last_minute']['p50_ms']})"
    )
    console.print(
        f"RSS {rss['start']} -> {rss['end']} MiB (peak {rss['peak']}, {rss['growth_pct']:+}%);"
        f" fds {fds['start']} -> {fds['end']} (peak {fds['peak']});"
        f" in flight after: {report['in_flight_after']}"
    )
