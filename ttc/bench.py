"""``ttc bench overhead|soak|streams`` (and ``ttc eval``, from ``ttc.eval``): typer front ends
of ``bench``.

``register(app)`` adds both to the main ``ttc`` app. The ``bench`` package (and matplotlib, from
the ``bench`` extra) are imported only when a command runs, so ``ttc serve`` never loads them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from ttc.eval import eval_command

bench_app = typer.Typer(help="Load benchmarks of the gateway itself.", no_args_is_help=True)
console = Console()


def register(app: typer.Typer) -> None:
    """Add ``eval`` and the ``bench`` group to ``app``."""
    app.command("eval")(eval_command)
    app.add_typer(bench_app, name="bench")


@bench_app.command("overhead")
def overhead_command(
    upstream: Annotated[
        str | None, typer.Option(help="real upstream base URL (default: start the fast one)")
    ] = None,
    model: Annotated[str, typer.Option(help="model name upstream (and tier name)")] = "fast",
    litellm_bin: Annotated[
        Path | None, typer.Option(help="LiteLLM's `litellm` binary (its own venv)")
    ] = None,
    concurrency: Annotated[
        str, typer.Option(help="closed-loop connections, comma-separated: 1,8")
    ] = "1,8",
    rate: Annotated[str, typer.Option(help="open-loop requests per second, e.g. 20")] = "20",
    requests: Annotated[int, typer.Option(min=1, help="measured requests per load")] = 1000,
    warmup: Annotated[int, typer.Option(min=0, help="unmeasured requests first")] = 100,
    max_tokens: Annotated[int, typer.Option(min=1)] = 16,
    modes: Annotated[str, typer.Option(help="concurrency,rate")] = "concurrency,rate",
    stream: Annotated[str, typer.Option(help="both | on | off")] = "both",
    idle_seconds: Annotated[
        float, typer.Option(min=0, help="measure idle CPU this long first (0: skip)")
    ] = 10.0,
    out: Annotated[Path, typer.Option(help="results JSON")] = Path(
        "bench/results/overhead-fast.json"
    ),
) -> None:
    """The gateway's own latency, CPU and memory, against the upstream direct and LiteLLM.

    Sends the same loads straight to the upstream, through a `ttc serve` (policy single) and
    through LiteLLM's proxy when --litellm-bin is given; CPU is counted over each proxy's
    process tree. Without --upstream a minimal fast upstream isolates the proxies' own cost.
    """
    from bench.overhead_run import Options, print_report, run

    chosen_modes = tuple(m.strip() for m in modes.split(","))
    streams = {"both": (False, True), "on": (True,), "off": (False,)}.get(stream)
    try:
        concurrencies = tuple(int(c) for c in concurrency.split(","))
        rates = tuple(float(r) for r in rate.split(","))
    except ValueError:
        concurrencies, rates = (), ()
    valid = streams is not None and set(chosen_modes) <= {"concurrency", "rate"}
    if not valid or min(concurrencies, default=0) < 1 or min(rates, default=0) <= 0:
        console.print(
            "[red]--concurrency and --rate take positive numbers (comma-separated), --modes"
            " concurrency,rate, --stream both, on or off[/red]"
        )
        raise typer.Exit(2)
    assert streams is not None
    options = Options(
        upstream=upstream,
        model=model,
        litellm_bin=litellm_bin,
        concurrency=concurrencies,
        rate=rates,
        requests=requests,
        warmup=warmup,
        max_tokens=max_tokens,
        modes=chosen_modes,
        streams=streams,
        idle_s=idle_seconds,
    )
    _run_and_save(lambda: run(options, console), print_report, out)


@bench_app.command("soak")
def soak_command(
    minutes: Annotated[float, typer.Option(min=0.1, help="how long to keep the load on")] = 10.0,
    clients: Annotated[int, typer.Option(min=1, help="closed-loop connections")] = 4,
    sample_every: Annotated[float, typer.Option(min=0.5, help="seconds between samples")] = 5.0,
    port: Annotated[int, typer.Option(help="the gateway's port (0: any free one)")] = 0,
    upstream_port: Annotated[int, typer.Option(help="the fast upstream's port (0: any)")] = 0,
    out: Annotated[Path, typer.Option(help="results JSON")] = Path("bench/results/soak.json"),
) -> None:
    """A gateway under steady mixed stream / non-stream load, watched for leaks.

    Starts the fast upstream and a `ttc serve` in front of it, keeps CLIENTS connections busy
    for MINUTES, samples the gateway's RSS and open fds, and reports start/end/peak of both,
    requests, errors, p50/p99 latency and the requests still in flight afterwards.
    """
    from bench.soak import Options, print_report, run

    options = Options(minutes, clients, sample_every, port, upstream_port)
    _run_and_save(lambda: run(options, console), print_report, out)


@bench_app.command("streams")
def streams_command(
    upstream: Annotated[str, typer.Option(help="the worker's base URL")] = (
        "http://127.0.0.1:8100"
    ),
    model: Annotated[str, typer.Option(help="model the worker serves (the tier)")] = (
        "smollm2-135m"
    ),
    policies: Annotated[
        str, typer.Option(help="comma-separated policy[:key=value...] (default: bench.streams)")
    ] = "",
    requests: Annotated[int, typer.Option(min=1, help="streamed requests per policy")] = 5,
    max_tokens: Annotated[int, typer.Option(min=1)] = 32,
    gateway: Annotated[
        str | None, typer.Option(help="a running gateway (default: start one)")
    ] = None,
    out: Annotated[Path, typer.Option(help="results JSON")] = Path("bench/results/streams.json"),
) -> None:
    """Time to first byte and to first content token of streamed answers, per policy, against
    single in the same run (policies interleaved, one request at a time)."""
    from bench.streams import POLICIES, Options, print_report, run, ttc_of

    chosen = tuple(p.strip() for p in policies.split(",") if p.strip()) or POLICIES
    try:
        for spec in chosen:
            ttc_of(spec)
    except ValueError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from exc
    options = Options(upstream.rstrip("/"), model, chosen, requests, max_tokens, gateway)
    _run_and_save(lambda: run(options, console), print_report, out)


def _run_and_save(
    run: Callable[[], dict[str, Any]],
    print_report: Callable[[Console, Any], None],
    out: Path,
) -> None:
    """Run a benchmark that starts processes, write its report to ``out`` and print it; a
    process that cannot start is a clear message and exit status 1."""
    from bench.processes import StartError

    try:
        report = run()
    except StartError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from exc
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print_report(console, report)
    console.print(f"results: {out}")
