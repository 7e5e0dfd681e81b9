"""``ttc router ...``: refit the learned difficulty predictor from traces or question sets."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

router_app = typer.Typer(help="The difficulty router.", no_args_is_help=True)
console = Console(stderr=True)


def _labelled(spec: str) -> tuple[Path, int]:
    path, sep, label = spec.rpartition("=")
    if not sep or label not in {"0", "1"}:
        raise typer.BadParameter(f"{spec!r}: expected FILE=0 (easy) or FILE=1 (hard)")
    return Path(path), int(label)


@router_app.command("train")
def train(
    out: Annotated[Path, typer.Option(help="model file to write (JSON)")],
    traces: Annotated[list[Path] | None, typer.Option(help="trace JSONL file (repeatable)")] = None,
    questions: Annotated[
        list[str] | None,
        typer.Option(help="labelled question set FILE=0|1, e.g. bench/data/hard-dev.jsonl=1"),
    ] = None,
    heldout: Annotated[float, typer.Option(min=0.05, max=0.5)] = 0.2,
    agree_below: Annotated[
        float, typer.Option(help="trace label: hard when sample agreement is below this")
    ] = 0.75,
    l2: Annotated[float, typer.Option(help="L2 regularisation strength")] = 0.01,
    seed: Annotated[int, typer.Option(help="seed of the held-out split")] = 0,
) -> None:
    """Fit the learned predictor; print AUC and Brier score on held-out records."""
    from router.learned import save_model
    from router.train import Example, question_examples, trace_examples
    from router.train import train as fit_model

    if not traces and not questions:
        raise typer.BadParameter("give --traces and/or --questions")
    examples: list[Example] = []
    skipped = 0
    sources: list[str] = []
    with console.status("reading examples"):
        for path in traces or []:
            found, missed = trace_examples(path, agree_below=agree_below)
            examples += found
            skipped += missed
            sources.append(path.name)
        for spec in questions or []:
            path, label = _labelled(spec)
            examples += question_examples(path, label)
            sources.append(f"{path.name}={label}")
    try:
        with console.status(f"fitting on {len(examples)} examples"):
            result = fit_model(
                examples, heldout=heldout, seed=seed, l2=l2, meta={"sources": sources}
            )
    except ValueError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from exc
    save_model(result.model, out)
    table = Table(title=f"router model -> {out}")
    for column in ("examples", "hard", "skipped", "held out", "AUC", "Brier"):
        table.add_column(column, justify="right")
    q = result.heldout
    table.add_row(
        str(len(examples)),
        str(sum(e.label for e in examples)),
        str(skipped),
        str(q.records),
        "n/a" if q.auc is None else f"{q.auc:.3f}",
        f"{q.brier:.3f}",
    )
    Console().print(table)
    console.print(
        f"held-out metrics from a model fitted on {result.train_records} examples; "
        f"the saved model is refitted on all {len(examples)}"
    )
