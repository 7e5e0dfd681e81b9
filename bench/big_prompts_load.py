"""The load half of ``bench.big_prompts``: small requests, alone and beside 1 MiB prompts.

A gateway (``ttc serve`` subprocess) in front of the fast upstream receives small requests at a
fixed rate (an open loop: each request's latency counts from its scheduled time, so a stalled
event loop shows in full). The same small load runs four times in one run: alone; while
``BIG_CLIENTS`` clients each send one 1 MiB prompt a second (``paced``: each stall a big prompt
causes shows, on a gateway with CPU to spare); while they send them back to back (each waits
for its answer, then sends the next: the gateway's process saturated, where small requests
queue behind the big ones' CPU as in any server); and alone again (drift of the shared
machine). The big prompts go through the routed path (the router predicts their difficulty),
as a client's would.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from bench import loadgen, processes
from bench.overhead import request_body
from bench.procstat import tree_usage
from bench.stats import latency_summary, ratio

MODEL = "fast"
BIG_CLIENTS = 4
BIG_PROMPT_BYTES = 2**20
# Ports the bench may use (the shared machine reserves 8400-8449 for gateways of this kind).
PORTS = range(8400, 8450)


@dataclass(frozen=True)
class LoadOptions:
    rate: float = 20.0  # small requests per second
    requests: int = 300  # small requests per phase
    warmup: int = 30
    big_every_s: float = 1.0  # paced phase: each big-prompt client sends one prompt a second


def port_in_range() -> int:
    for port in PORTS:
        with socket.socket() as sock, contextlib.suppress(OSError):
            sock.bind(("127.0.0.1", port))
            return port
    raise RuntimeError(f"no free port in {PORTS.start}-{PORTS.stop - 1}")


def start_upstream(workdir: Path) -> processes.Started:
    port = port_in_range()
    command = [sys.executable, "-m", "bench.fast_upstream", "--port", str(port), "--model", MODEL]
    return processes.start("fast-upstream", command, f"http://127.0.0.1:{port}", "/health", workdir)


def start_gateway(upstream: str, workdir: Path) -> processes.Started:
    port = port_in_range()
    config = processes.gateway_config(MODEL, upstream, port)
    config["server"]["max_body_bytes"] = 4 * BIG_PROMPT_BYTES  # a 1 MiB prompt, not a 413
    path = workdir / "gateway.yaml"
    path.write_text(yaml.safe_dump(config))
    command = [sys.executable, "-m", "ttc.cli", "serve", "--config", str(path)]
    return processes.start("ttc-gateway", command, f"http://127.0.0.1:{port}", "/ready", workdir)


def big_body() -> dict[str, Any]:
    sentence = "Describe, step by step, how 12 gardeners share 345 seeds; then explain why. "
    prompt = (sentence * (BIG_PROMPT_BYTES // len(sentence) + 1))[:BIG_PROMPT_BYTES]
    body = request_body(MODEL, 16, stream=False)
    body["model"] = "auto"  # routed: the router reads the prompt
    body["messages"] = [{"role": "user", "content": prompt}]
    return body


async def _big_clients(target: loadgen.Target, stop: asyncio.Event, every_s: float) -> loadgen.Run:
    """``BIG_CLIENTS`` connections, each sending a big prompt every ``every_s`` seconds, or
    when its last one is answered if that takes longer (0: back to back)."""
    run = loadgen.Run()

    async def client() -> None:
        connection = await loadgen.Connection.open(target)
        try:
            while not stop.is_set():
                sent = time.perf_counter()
                run.samples.append(await connection.send(target, sent))
                with contextlib.suppress(TimeoutError):
                    left = every_s - (time.perf_counter() - sent)
                    await asyncio.wait_for(stop.wait(), max(left, 0.0))
        finally:
            connection.close()

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(BIG_CLIENTS)))
    run.wall_s = time.perf_counter() - started
    return run


def _summary(run: loadgen.Run) -> dict[str, Any]:
    ok = [s.latency_s for s in run.samples if s.ok]
    return {
        "requests": len(run.samples),
        "errors": len(run.samples) - len(ok),
        "latency_ms": latency_summary(ok),
    }


async def _beside_big_prompts(
    url: str, pid: int, small: loadgen.Target, options: LoadOptions, every_s: float
) -> dict[str, Any]:
    """The small load while the big-prompt clients send every ``every_s`` seconds."""
    stop = asyncio.Event()
    cpu_before = tree_usage(pid).cpu_s
    clients = asyncio.create_task(_big_clients(loadgen.Target(url, big_body(), {}), stop, every_s))
    beside = await loadgen.open_loop(small, options.rate, options.requests)
    stop.set()
    big_run = await clients
    cpu_s = tree_usage(pid).cpu_s - cpu_before
    return {
        "small": _summary(beside),
        "big_prompts": _summary(big_run)
        | {"clients": BIG_CLIENTS, "prompt_bytes": BIG_PROMPT_BYTES, "every_s": every_s},
        "gateway_cpu_s": round(cpu_s, 3),
        "gateway_cpu_share": round(cpu_s / big_run.wall_s, 3),
    }


async def phases(url: str, pid: int, options: LoadOptions) -> dict[str, Any]:
    """Small load alone, beside paced and back-to-back big prompts, then alone again."""
    small = loadgen.Target(url, request_body(MODEL, 16, stream=False), {})
    await loadgen.open_loop(small, options.rate, options.warmup)
    base = _summary(await loadgen.open_loop(small, options.rate, options.requests))
    result: dict[str, Any] = {"small_alone": base}
    for name, every_s in (("paced", options.big_every_s), ("back_to_back", 0.0)):
        beside = await _beside_big_prompts(url, pid, small, options, every_s)
        loaded = beside["small"]["latency_ms"]
        beside["p50_ratio"] = ratio(loaded["p50"], base["latency_ms"]["p50"])
        beside["p99_ratio"] = ratio(loaded["p99"], base["latency_ms"]["p99"])
        result[name] = beside
    result["small_alone_after"] = _summary(
        await loadgen.open_loop(small, options.rate, options.requests)
    )
    return result
