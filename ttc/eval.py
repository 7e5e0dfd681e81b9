"""``ttc eval``: the typer front end of ``bench.eval`` (question sets) and ``bench.mixed_run``.

The ``bench`` package (and matplotlib, from the ``bench`` extra) are imported only when the
command runs, so ``ttc serve`` never loads them.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.console import Console

if TYPE_CHECKING:
    from bench.eval import PartialStore, Record, Setting
    from bench.mixed_run import Options as MixedOptions
    from bench.scoring import Question

console = Console()

DEFAULT_SETTINGS = "single,bon4,bon8,bon16,adaptive95,adaptive90,convergence,auto"


# The four settings issue 24 judges routing by: the router, one greedy answer, fixed best-of-8
# and adaptive_bon pinned with its defaults.
MIXED_SETTINGS = "greedy,auto,bon8,adaptive"
# A question set's max_tokens when none is given: the earlier runs' (short answers fit in it).
QUESTION_MAX_TOKENS = 48


def eval_command(
    data: Annotated[
        Path,
        typer.Option(
            help="question set (JSONL) or mixed set (its .json manifest: bench/data/mixed.json)"
        ),
    ] = Path("bench/data/facts-dev.jsonl"),
    gateway: Annotated[str, typer.Option(help="gateway base URL")] = "http://127.0.0.1:8000",
    settings: Annotated[
        str | None,
        typer.Option(
            help=(
                "comma-separated settings: single, greedy, bonN, adaptive, adaptiveXX, convergence,"
                " auto; each may add :key=value ttc overrides (adaptive:max_samples=16)."
                f" Default: {DEFAULT_SETTINGS} (question set), {MIXED_SETTINGS} (mixed set)"
            )
        ),
    ] = None,
    concurrency: Annotated[int, typer.Option(min=1, help="requests in flight")] = 4,
    out: Annotated[Path | None, typer.Option(help="results JSON")] = None,
    model: Annotated[str, typer.Option(help="model of the 'auto' setting")] = "auto",
    tier: Annotated[str, typer.Option(help="tier the fixed policies pin")] = "smollm2-135m",
    max_tokens: Annotated[
        int | None,
        typer.Option(
            min=1,
            help=f"max_tokens of each question (default {QUESTION_MAX_TOKENS}); a mixed set's"
            " prompts carry their own",
        ),
    ] = None,
    temperature: Annotated[
        float | None, typer.Option(help="temperature sent (default: none, the policy's)")
    ] = None,
    limit: Annotated[
        int | None,
        typer.Option(min=1, help="evenly spaced subset: N questions (mixed set: N per shape)"),
    ] = None,
    api_key: Annotated[str, typer.Option(envvar="TTC_API_KEY", help="bearer key")] = "unused",
    timeout: Annotated[float, typer.Option(help="seconds per request")] = 600.0,
    fresh: Annotated[bool, typer.Option(help="discard stored partial records")] = False,
    suffix: Annotated[
        str, typer.Option(help="appended to every question, e.g. ' Think step by step.'")
    ] = "",
    runs: Annotated[
        int, typer.Option(min=1, help="mixed set: repeated runs, reported as mean and spread")
    ] = 1,
    split: Annotated[
        str, typer.Option(help="mixed set: all, tune or heldout (final figures: heldout)")
    ] = "all",
    shapes: Annotated[
        str | None, typer.Option(help="mixed set: comma-separated closed, open, many_valid")
    ] = None,
) -> None:
    """Run a question set or a mixed set through a running gateway for each setting; table,
    JSON and plot.

    Settings: single, greedy (single at temperature 0), bonN (fixed best-of-N majority),
    adaptive / adaptiveXX (adaptive_bon at confidence 0.XX), convergence, auto; any of them
    with ``:key=value`` ttc overrides (adaptive:max_samples=16:confidence=0.95). Records are
    appended to OUT's .partial.jsonl (a mixed set: one file per run) as they arrive; rerunning
    the same command resumes, asking only what is missing or failed.

    A mixed set (bench/data/mixed.json) sends each prompt as it is (chat or completions, its
    own max_tokens) and reports per answer shape: accuracy (closed), completion tokens and
    samples per request, p50 latency, over --runs runs of the --split part.
    """
    from bench.eval import parse_setting

    mixed = data.suffix == ".json"
    names = settings or (MIXED_SETTINGS if mixed else DEFAULT_SETTINGS)
    try:
        chosen = [parse_setting(n.strip(), tier=tier, auto_model=model) for n in names.split(",")]
    except ValueError as exc:
        _refuse(str(exc))
    if mixed:
        if max_tokens is not None or suffix:
            _refuse(
                "a mixed set's prompts carry their own max_tokens and text: no --max-tokens"
                " or --suffix"
            )
        from bench.mixed import SHAPES
        from bench.mixed_run import Options

        options = Options(
            data=data,
            gateway=gateway,
            api_key=api_key,
            timeout=timeout,
            settings=tuple(chosen),
            split=split,
            shapes=tuple(s.strip() for s in shapes.split(",")) if shapes else SHAPES,
            limit=limit,
            runs=runs,
            concurrency=concurrency,
            temperature=temperature,
            tier=tier,
            model=model,
            out=out or Path("bench/results") / f"eval-{data.stem}-{split}.json",
            fresh=fresh,
        )
        _eval_mixed(options)
        return
    if runs != 1 or split != "all" or shapes is not None:
        _refuse(
            "--runs, --split and --shapes apply to a mixed set (a .json manifest such as"
            " bench/data/mixed.json)"
        )
    meta: dict[str, Any] = {
        "data": str(data),
        "limit": limit,
        "max_tokens": max_tokens or QUESTION_MAX_TOKENS,
        "temperature": temperature,
        "suffix": suffix,
        "tier": tier,
        "model": model,
    }
    connection = (gateway, api_key, timeout)
    _eval_questions(chosen, data, meta, connection, concurrency, out, fresh)


def _refuse(message: str) -> NoReturn:
    console.print(f"[red]{message}[/red]")
    raise typer.Exit(2)


def _eval_mixed(options: MixedOptions) -> None:
    """A mixed set: ``bench.mixed_run`` does the runs, the files and the table."""
    from bench.mixed_run import run

    try:
        run(options, console)
    except (OSError, ValueError) as exc:
        _refuse(str(exc))


def _eval_questions(
    chosen: list[Setting],
    data: Path,
    meta: dict[str, Any],
    connection: tuple[str, str, float],
    concurrency: int,
    out: Path | None,
    fresh: bool,
) -> None:
    """A question set, as ``ttc eval`` always ran it: one pass, one summary per setting."""
    from bench.eval import PartialStore, rescore, spread
    from bench.report import build_results, pareto_plot, print_table
    from bench.scoring import load_questions

    out = out or Path("bench/results") / f"eval-{data.stem}.json"
    try:
        questions = spread(load_questions(data), meta["limit"])
    except (OSError, ValueError) as exc:
        _refuse(str(exc))
    meta = {"data": meta["data"], "questions": len(questions), **meta}
    partial = out.with_suffix(".partial.jsonl")
    if fresh:
        partial.unlink(missing_ok=True)
    store = PartialStore(partial, meta)
    gateway, api_key, timeout = connection
    try:
        records = asyncio.run(
            _run_eval(gateway, api_key, timeout, chosen, questions, store, concurrency, meta)
        )
    except ValueError as exc:
        _refuse(str(exc))
    run_meta = {**meta, "gateway": gateway, "settings": [s.name for s in chosen]}
    records = rescore(records, questions)
    results = build_results(run_meta, chosen, records, [q.id for q in questions])
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    plot = out.with_suffix(".png")
    title = f"{data.name}: {len(questions)} questions, max_tokens={meta['max_tokens']}"
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
