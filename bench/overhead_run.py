"""One ``ttc bench overhead`` run: start the processes, run the loads, report, clean up."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench import processes
from bench.overhead import Proxy, idle_cpu, loads, run_loads
from bench.report import machine


@dataclass(frozen=True)
class Options:
    """What to run. ``upstream`` None starts the fast upstream; a URL uses that server."""

    upstream: str | None
    model: str
    litellm_bin: Path | None
    concurrency: tuple[int, ...]
    rate: tuple[float, ...]
    requests: int
    warmup: int
    max_tokens: int
    modes: tuple[str, ...]
    streams: tuple[bool, ...]
    idle_s: float = 10.0


def describe_upstream(options: Options) -> str:
    if options.upstream is None:
        return "fast upstream (bench.fast_upstream: instant fixed completion; isolates the proxy)"
    return f"real upstream at {options.upstream} (model {options.model})"


def run(options: Options, console: Console) -> dict[str, Any]:
    """Start what ``options`` asks for, measure every load, stop everything started."""
    load_at_start = list(os.getloadavg())
    started: list[processes.Started] = []
    workdir = Path(tempfile.mkdtemp(prefix="ttc-overhead-"))
    try:
        proxies = _start(options, workdir, started, console)
        decision = loads(
            options.concurrency,
            options.rate,
            options.requests,
            options.warmup,
            options.modes,
            options.streams,
        )

        def show(result: Mapping[str, Any]) -> None:
            latency = result["latency_ms"]
            console.print(
                f"  {result['load']:<14} {result['target']:<8}"
                f" p50 {_fmt(latency['p50']):>8} ms  p99 {_fmt(latency['p99']):>8} ms"
                f"  cpu/req {_fmt(result.get('proxy_cpu_ms_per_request')):>6} ms"
                f"  errors {result['errors']}"
            )

        idle = _run_async(idle_cpu(proxies, options.idle_s)) if options.idle_s > 0 else {}
        console.print(f"idle CPU (ms per s) over {options.idle_s:g} s: {idle}")
        by_load = _run_async(run_loads(proxies, decision, options.model, options.max_tokens, show))
    finally:
        for process in reversed(started):
            processes.stop(process)
    shutil.rmtree(workdir)  # kept when something failed: it holds the processes' logs
    return {
        "upstream": describe_upstream(options),
        "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(options).items()},
        "machine": machine(),
        "load_average_at_start": load_at_start,
        "load_average_at_end": list(os.getloadavg()),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "idle_cpu_ms_per_s": idle,
        "loads": by_load,
    }


def _run_async(coroutine: Any) -> Any:
    """uvloop when installed: the load generator then costs less of the shared CPU."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)


def _start(
    options: Options, workdir: Path, started: list[processes.Started], console: Console
) -> list[Proxy]:
    upstream = options.upstream
    if upstream is None:
        fast = processes.start_fast_upstream(options.model, workdir)
        started.append(fast)
        upstream = fast.url
    console.print(f"upstream: {describe_upstream(options)}")
    proxies = [Proxy("direct", upstream.rstrip("/"), {})]
    gateway = processes.start_gateway(options.model, upstream.rstrip("/"), workdir)
    started.append(gateway)
    proxies.append(Proxy("ttc", gateway.url, {}, gateway.pid))
    if options.litellm_bin is None or not options.litellm_bin.exists():
        console.print(f"LiteLLM: skipped (no binary at {options.litellm_bin})")
    else:
        console.print("LiteLLM: starting its proxy (takes a few seconds)")
        litellm = processes.start_litellm(options.litellm_bin, options.model, upstream, workdir)
        started.append(litellm)
        auth = {"authorization": f"Bearer {processes.LITELLM_KEY}"}
        proxies.append(Proxy("litellm", litellm.url, auth, litellm.pid))
    return proxies


def _fmt(value: Any, spec: str = ".2f") -> str:
    return "-" if value is None else format(value, spec)


def _rows(report: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any], Mapping[str, Any]]]:
    """(load name, result, that target's comparison with direct) for every measurement."""
    return [
        (entry["load"]["name"], result, entry["comparison"].get(result["target"], {}))
        for entry in report["loads"]
        for result in entry["results"]
    ]


def latency_table(report: Mapping[str, Any]) -> Table:
    """Latency and TTFT (ms) per load and target, and what each proxy adds over direct."""
    table = Table(title=f"latency (ms); upstream: {report['upstream']}")
    for column in ("load", "target", "p50", "p99", "+p50", "+p99", "ttft p50", "+ttft p50"):
        table.add_column(column, justify="left" if column in ("load", "target") else "right")
    for load, result, added in _rows(report):
        latency, ttft = result["latency_ms"], result.get("ttft_ms") or {}
        table.add_row(
            load,
            result["target"],
            _fmt(latency["p50"]),
            _fmt(latency["p99"]),
            _fmt(added.get("added_latency_p50_ms")),
            _fmt(added.get("added_latency_p99_ms")),
            _fmt(ttft.get("p50")),
            _fmt(added.get("added_ttft_p50_ms")),
        )
    return table


def cost_table(report: Mapping[str, Any]) -> Table:
    """Throughput, the proxy's CPU per request and per CPU-second, and its peak RSS."""
    table = Table(title="throughput and proxy cost (CPU over the proxy's process tree)")
    for column in ("load", "target", "req/s", "errors", "cpu ms/req", "req/cpu-s", "RSS MB"):
        table.add_column(column, justify="left" if column in ("load", "target") else "right")
    for load, result, _ in _rows(report):
        table.add_row(
            load,
            result["target"],
            _fmt(result["throughput_rps"], ".0f"),
            str(result["errors"]),
            _fmt(result.get("proxy_cpu_ms_per_request")),
            _fmt(result.get("requests_per_cpu_second"), ".0f"),
            _fmt(result.get("peak_rss_mb"), ".0f"),
        )
    return table


def ratios_table(report: Mapping[str, Any]) -> Table | None:
    """LiteLLM over the gateway, per load (None when LiteLLM did not run)."""
    rows = [(e["load"]["name"], e["comparison"].get("litellm_over_ttc")) for e in report["loads"]]
    if not any(r for _, r in rows):
        return None
    table = Table(title="LiteLLM / ttc-gateway (higher: the gateway is cheaper)")
    for column in ("load", "cpu per request", "peak RSS", "added p50 latency"):
        table.add_column(column, justify="right" if column != "load" else "left")
    for name, r in rows:
        if r:
            table.add_row(
                name,
                _fmt(r["proxy_cpu_ms_per_request"], ".1f") + "x",
                _fmt(r["peak_rss_mb"], ".1f") + "x",
                _fmt(r["added_latency_p50"], ".1f") + "x",
            )
    return table


def print_report(console: Console, report: Mapping[str, Any]) -> None:
    console.print(latency_table(report))
    console.print(cost_table(report))
    table = ratios_table(report)
    if table is not None:
        console.print(table)
