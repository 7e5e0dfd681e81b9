"""One ``ttc eval`` of a mixed set: every setting on every chosen prompt, ``runs`` times.

Each run keeps its records in its own ``<out>.runN.partial.jsonl`` (``bench.eval``'s
``PartialStore``), so an interrupted eval resumes where it stopped: finished runs are read back,
the run in progress asks only what is missing or failed, and ``--runs 5`` after ``--runs 3``
asks only runs 4 and 5. Runs go one after another, each a full pass over settings and prompts,
so the spread across runs is the spread of whole passes.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from openai import AsyncOpenAI
from rich.console import Console

from bench.ask import prompt_ask
from bench.eval import Ask, PartialStore, Record, Setting, evaluate, rescore
from bench.mixed import Prompt, load_mixed, select
from bench.mixed_report import mixed_plot, mixed_table
from bench.mixed_summary import Records, build_mixed_results
from bench.scoring import Question


@dataclass(frozen=True)
class Options:
    """What to run; ``limit`` is per shape, ``temperature`` None sends none."""

    data: Path
    gateway: str
    api_key: str
    timeout: float
    settings: tuple[Setting, ...]
    split: str
    shapes: tuple[str, ...]
    limit: int | None
    runs: int
    concurrency: int
    temperature: float | None
    tier: str
    model: str
    out: Path
    fresh: bool = False


def chosen_prompts(options: Options) -> list[Prompt]:
    """The prompts of the options' split and shapes (``ValueError`` on a bad set or option)."""
    return select(
        load_mixed(options.data), split=options.split, shapes=options.shapes, limit=options.limit
    )


def prompts_digest(prompts: list[Prompt]) -> str:
    """A digest of what is sent (ids, endpoints, texts, lengths, stops), not of the answers:
    a run's records are reused only for the same requests, and rescored with the answers."""
    sent = [(p.id, p.endpoint, p.messages, p.text, p.max_tokens, p.stop) for p in prompts]
    return hashlib.sha256(json.dumps(sent).encode()).hexdigest()[:16]


def partial_path(out: Path, run: int) -> Path:
    return out.with_name(f"{out.stem}.run{run}.partial.jsonl")


def run_meta(options: Options, prompts: list[Prompt]) -> dict[str, Any]:
    """The parameters a run's records depend on (the settings are each record's own key)."""
    return {
        "data": str(options.data),
        "split": options.split,
        "shapes": list(options.shapes),
        "limit": options.limit,
        "prompts": len(prompts),
        "prompts_sha256": prompts_digest(prompts),
        "temperature": options.temperature,
        "tier": options.tier,
        "model": options.model,
    }


def run(options: Options, console: Console, ask: Ask | None = None) -> dict[str, Any]:
    """Ask, or read back, every run; write the results JSON and plot; print the table.

    ``ask`` (default: the gateway at ``options.gateway``, through the OpenAI SDK) is where the
    requests go; tests give a stand-in."""
    prompts = chosen_prompts(options)
    meta = run_meta(options, prompts)
    stores = [PartialStore(partial_path(options.out, n), meta) for n in range(1, options.runs + 1)]
    if options.fresh:
        for store in stores:
            store.path.unlink(missing_ok=True)
    runs = asyncio.run(_ask_all(options, prompts, stores, console, ask))
    questions = [p.question() for p in prompts]
    runs = [rescore(records, questions) for records in runs]
    full_meta = {
        **meta,
        "runs": options.runs,
        "gateway": options.gateway,
        "settings": [s.name for s in options.settings],
    }
    results = build_mixed_results(full_meta, options.settings, runs, prompts)
    options.out.parent.mkdir(parents=True, exist_ok=True)
    options.out.write_text(json.dumps(results, indent=2) + "\n")
    plot = options.out.with_suffix(".png")
    title = f"{options.data.name} ({options.split}): {len(prompts)} prompts, {options.runs} run(s)"
    mixed_plot(results, plot, title)
    if not console.is_terminal:  # piped into a log: keep the columns rather than squeeze to 80
        console.width = max(console.width, 160)
    console.print(mixed_table(results, title))
    console.print(f"results: {options.out}  plot: {plot}  records: {stores[0].path} ...")
    return results


async def ask_runs(
    ask: Ask,
    settings: Sequence[Setting],
    questions: Sequence[Question],
    stores: Sequence[PartialStore],
    concurrency: int,
    on_record: Callable[[int, Record], None] = lambda _n, _r: None,
    on_resume: Callable[[int, int], None] = lambda _n, _d: None,
) -> list[Records]:
    """Every run's records, run after run, each resumed from its own store; the callbacks
    learn the run's number (from 1) with each record, and how many pairs it had answered."""
    runs: list[Records] = []
    for number, store in enumerate(stores, start=1):
        records = await evaluate(
            ask,
            settings,
            questions,
            store,
            concurrency,
            on_record=functools.partial(on_record, number),
            on_resume=functools.partial(on_resume, number),
        )
        runs.append(records)
    return runs


async def _ask_all(
    options: Options,
    prompts: list[Prompt],
    stores: list[PartialStore],
    console: Console,
    ask: Ask | None,
) -> list[Records]:
    """``ask_runs`` under a progress bar, through the gateway unless ``ask`` is given."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    questions = [p.question() for p in prompts]
    per_run = len(options.settings) * len(questions)
    columns = (BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress("{task.description}", *columns, console=console) as progress:
        task = progress.add_task("eval", total=per_run * len(stores))

        def advance(number: int, record: Record) -> None:
            mark = "error" if record.error else "done"
            label = f"run {number} {record.setting} {record.id} {mark}"
            progress.update(task, advance=1, description=label)

        def resumed(number: int, done: int) -> None:
            progress.update(task, completed=(number - 1) * per_run + done)

        async def go(chosen: Ask) -> list[Records]:
            return await ask_runs(
                chosen, options.settings, questions, stores, options.concurrency, advance, resumed
            )

        if ask is not None:
            return await go(ask)
        async with _client(options) as client:
            return await go(
                prompt_ask(client, {p.id: p for p in prompts}, temperature=options.temperature)
            )


def _client(options: Options) -> AsyncOpenAI:
    base_url = options.gateway.rstrip("/") + "/v1"
    return AsyncOpenAI(base_url=base_url, api_key=options.api_key, timeout=options.timeout)
