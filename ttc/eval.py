"""``ttc eval``: the typer front end of ``bench.eval`` (question sets) and ``bench.mixed_run``.

The ``bench`` package (and matplotlib, from the ``bench`` extra) are imported only when the
command runs, so ``ttc serve`` never loads them.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

if TYPE_CHECKING:
    from bench.eval import PartialStore, Record, Setting
    from bench.scoring import Question

console = Console()

DEFAULT_SETTINGS = "single,bon4,bon8,bon16,adaptive95,adaptive90,convergence,auto"


def eval_command(
    data: Annotated[Path, typer.Option(help="question set (JSONL)")] = Path(
        "bench/data/facts-dev.jsonl"
    ),
    gateway: Annotated[str, typer.Option(help="gateway base URL")] = "http://127.0.0.1:8000",
    settings: Annotated[
        str,
        typer.Option(
            help=(
                "comma-separated settings: single, greedy, bonN, adaptive, adaptiveXX, convergence,"
                " auto; each may add :key=value ttc overrides (adaptive:max_samples=16)"
            )
        ),
    ] = DEFAULT_SETTINGS,
    concurrency: Annotated[int, typer.Option(min=1, help="requests in flight")] = 4,
    out: Annotated[Path | None, typer.Option(help="results JSON")] = None,
    model: Annotated[str, typer.Option(help="model of the 'auto' setting")] = "auto",
    tier: Annotated[str, typer.Option(help="tier the fixed policies pin")] = "smollm2-135m",
    max_tokens: Annotated[int, typer.Option(min=1, help="max_tokens of each request")] = 48,
    temperature: Annotated[
        float | None, typer.Option(help="temperature sent (default: none, the policy's)")
    ] = None,
    limit: Annotated[
        int | None, typer.Option(min=1, help="evenly spaced subset of N questions")
    ] = None,
    api_key: Annotated[str, typer.Option(envvar="TTC_API_KEY", help="bearer key")] = "unused",
    timeout: Annotated[float, typer.Option(help="seconds per request")] = 600.0,
    fresh: Annotated[bool, typer.Option(help="discard stored partial records")] = False,
    suffix: Annotated[
        str, typer.Option(help="appended to every question, e.g. ' Think step by step.'")
    ] = "",
) -> None:
    """Run a question set through a running gateway for each setting; table, JSON and plot.

    Settings: single, greedy (single at temperature 0), bonN (fixed best-of-N majority),
    adaptive / adaptiveXX (adaptive_bon at confidence 0.XX), convergence, auto; any of them
    with ``:key=value`` ttc overrides (adaptive:max_samples=16:confidence=0.95). Records are
    appended to OUT's .partial.jsonl as they arrive; rerunning the same command resumes,
    asking only what is missing or failed.
    """
    from bench.eval import PartialStore, parse_setting, rescore, spread
    from bench.report import build_results, pareto_plot, print_table
    from bench.scoring import load_questions

    out = out or Path("bench/results") / f"eval-{data.stem}.json"
    try:
        chosen = [
            parse_setting(n.strip(), tier=tier, auto_model=model) for n in settings.split(",")
        ]
        questions = spread(load_questions(data), limit)
    except (OSError, ValueError) as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from exc
    meta: dict[str, Any] = {
        "data": str(data),
        "questions": len(questions),
        "limit": limit,
        "max_tokens": max_tokens,
        "temperature": temperature,
        "suffix": suffix,
        "tier": tier,
        "model": model,
    }
    partial = out.with_suffix(".partial.jsonl")
    if fresh:
        partial.unlink(missing_ok=True)
    store = PartialStore(partial, meta)
    try:
        records = asyncio.run(
            _run_eval(gateway, api_key, timeout, chosen, questions, store, concurrency, meta)
        )
    except ValueError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from exc
    run_meta = {**meta, "gateway": gateway, "settings": [s.name for s in chosen]}
    records = rescore(records, questions)
    results = build_results(run_meta, chosen, records, [q.id for q in questions])
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    plot = out.with_suffix(".png")
    title = f"{data.name}: {len(questions)} questions, max_tokens={max_tokens}"
    pareto_plot(results["settings"], plot, title)
    print_table(console, results["settings"], title)
    console.print(f"results: {out}  plot: {plot}  records: {partial}")


async def _run_eval(
    gateway: str,
    api_key: str,
    timeout: float,
    settings: list[Setting],
    questions: list[Question],
    store: PartialStore,
    concurrency: int,
    meta: dict[str, Any],
) -> dict[tuple[str, str], Record]:
    from openai import AsyncOpenAI
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from bench.ask import openai_ask
    from bench.eval import evaluate

    client = AsyncOpenAI(base_url=gateway.rstrip("/") + "/v1", api_key=api_key, timeout=timeout)
    ask = openai_ask(
        client,
        max_tokens=meta["max_tokens"],
        temperature=meta["temperature"],
        suffix=meta.get("suffix", ""),
    )
    columns = (BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress("{task.description}", *columns, console=console) as progress:
        task = progress.add_task("eval", total=len(settings) * len(questions))

        def advance(record: Record) -> None:
            mark = "error" if record.error else ("right" if record.correct else "wrong")
            progress.update(task, advance=1, description=f"{record.setting} {record.id} {mark}")

        async with client:
            return await evaluate(
                ask,
                settings,
                questions,
                store,
                concurrency,
                on_record=advance,
                on_resume=lambda done: progress.update(task, completed=done),
            )
