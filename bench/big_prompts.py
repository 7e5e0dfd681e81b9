"""Big prompts: what routing one costs, and whether they stall the small requests beside them.

    .venv/bin/python -m bench.big_prompts [--requests 300] [--rate 20] [--big-every 1] [--out PATH]

1. In process: ``Router.decide`` (features + the learned predictor, default config) timed for
   prompts of 1 KiB, 100 KiB and 1 MiB, for 31,768 tiny messages, and for a 1 MiB prompt with
   tier and policy pinned (prediction skipped); also parsing and validating each body
   (``server.api.chat.endpoint.parse_chat``), the other per-byte work the event loop does for
   a prompt.
2. Under load (``bench.big_prompts_load``): a gateway subprocess in front of the fast upstream;
   p50/p99 of small requests alone and while 4 clients send 1 MiB prompts, one a second each
   (paced) and back to back (the gateway saturated), and the ratios to alone.

Results go to ``bench/results/big-prompts.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from rich.console import Console

from bench import processes
from bench.big_prompts_load import LoadOptions, phases, start_gateway, start_upstream
from bench.report import machine
from core.request import GenRequest
from policies.config import PoliciesConfig
from router.config import RouterConfig
from router.router import Router
from server.api.chat.endpoint import parse_chat

OUT = Path(__file__).parent / "results" / "big-prompts.json"
SENTENCE = "A tank holds 200 litres; it leaks 15 litres an hour for 6 hours. How much is left? "
SIZES = {"1 KiB": 2**10, "100 KiB": 100 * 2**10, "1 MiB": 2**20}


def prompt(size: int) -> str:
    return (SENTENCE * (size // len(SENTENCE) + 1))[:size]


def cases() -> dict[str, dict[str, Any]]:
    """Name -> chat body (as a client sends it)."""
    out: dict[str, dict[str, Any]] = {
        name: {"model": "auto", "messages": [{"role": "user", "content": prompt(size)}]}
        for name, size in SIZES.items()
    }
    tiny = [{"role": "user" if i % 2 == 0 else "assistant", "content": "ok"} for i in range(31_767)]
    out["31,768 tiny messages"] = {"model": "auto", "messages": tiny}
    out["1 MiB, tier and policy pinned"] = {
        "model": "small",
        "messages": out["1 MiB"]["messages"],
        "ttc": {"policy": "single"},
    }
    return out


def _timed(action: Callable[[], object], repeats: int) -> dict[str, float]:
    """Median wall and CPU milliseconds of ``action`` over ``repeats`` runs."""
    wall, cpu = [], []
    for _ in range(repeats):
        w, c = time.perf_counter(), time.process_time()
        action()
        wall.append(time.perf_counter() - w)
        cpu.append(time.process_time() - c)
    return {
        "wall_ms": round(statistics.median(wall) * 1000, 3),
        "cpu_ms": round(statistics.median(cpu) * 1000, 3),
    }


def routing_costs(repeats: int) -> dict[str, Any]:
    router = Router(RouterConfig(), PoliciesConfig(), ("small", "large"))
    results: dict[str, Any] = {}
    for name, body in cases().items():
        raw = json.dumps(body).encode()
        chat = parse_chat(raw)
        req = GenRequest(messages=chat.wire_messages(), model=chat.model, ttc=chat.ttc or {})
        results[name] = {
            "body_bytes": len(raw),
            "decide": _timed(partial(router.decide, req), repeats),
            "parse_and_validate": _timed(partial(parse_chat, raw), repeats),
        }
    return results


def run_load(options: LoadOptions, console: Console) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="ttc-big-prompts-"))
    started: list[processes.Started] = []
    try:
        upstream = start_upstream(workdir)
        started.append(upstream)
        gateway = start_gateway(upstream.url, workdir)
        started.append(gateway)
        console.print(f"gateway {gateway.url} (pid {gateway.pid}), upstream {upstream.url}")
        result = asyncio.run(phases(gateway.url, gateway.pid, options))
    finally:
        for process in reversed(started):
            processes.stop(process)
    shutil.rmtree(workdir)  # kept when something failed: it holds the processes' logs
    return result


def show(console: Console, report: dict[str, Any]) -> None:
    console.print("routing cost per request (in process, median):")
    for name, r in report["routing"].items():
        console.print(
            f"  {name:<32} decide {r['decide']['cpu_ms']:>8.3f} ms CPU"
            f"   parse+validate {r['parse_and_validate']['cpu_ms']:>8.3f} ms CPU"
        )
    load = report["load"]
    for phase in ("small_alone", "small_alone_after"):
        latency = load[phase]["latency_ms"]
        console.print(f"  {phase:<34} p50 {latency['p50']:>8} ms  p99 {latency['p99']:>8} ms")
    for mode in ("paced", "back_to_back"):
        beside, big = load[mode], load[mode]["big_prompts"]
        latency = beside["small"]["latency_ms"]
        console.print(
            f"  small beside big prompts, {mode:<12} p50 {latency['p50']:>8} ms"
            f"  p99 {latency['p99']:>8} ms  errors {beside['small']['errors']}"
            f"  ratio p50 {beside['p50_ratio']}x p99 {beside['p99_ratio']}x"
        )
        console.print(
            f"    {big['requests']} big prompts (errors {big['errors']}), p50"
            f" {big['latency_ms']['p50']} ms; gateway CPU {beside['gateway_cpu_share']:.0%}"
            " of a core"
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=300, help="small requests per phase")
    parser.add_argument("--rate", type=float, default=20.0, help="small requests per second")
    parser.add_argument(
        "--big-every",
        type=float,
        default=1.0,
        help="paced phase: seconds between one client's big prompts",
    )
    parser.add_argument("--repeats", type=int, default=20, help="in-process timings per case")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    console = Console()
    load_at_start = list(os.getloadavg())
    report: dict[str, Any] = {"routing": routing_costs(args.repeats)}
    options = LoadOptions(rate=args.rate, requests=args.requests, big_every_s=args.big_every)
    report["load"] = run_load(options, console)
    given = sys.argv[1:] if argv is None else argv
    report |= {
        "command": " ".join(["python -m bench.big_prompts", *given]),
        "options": {
            "rate": args.rate,
            "requests": args.requests,
            "repeats": args.repeats,
            "big_every_s": args.big_every,
        },
        "machine": machine(),
        "load_average_at_start": load_at_start,
        "load_average_at_end": list(os.getloadavg()),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    show(console, report)
    console.print(f"written to {args.out}")


if __name__ == "__main__":
    main()
