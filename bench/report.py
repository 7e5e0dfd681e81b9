"""Eval results: per-setting summaries, the JSON file, the rich table and the Pareto plot.

Definitions (per setting, over the questions answered without error):
accuracy = correct / answered; tokens per question = mean ``usage.completion_tokens`` (every
sample, probe and judge token the gateway spent), split into thinking tokens per question (the
``completion_tokens_details.reasoning_tokens`` of reasoning tiers) and answer tokens per
question (the rest: answers, probes, judges); samples per question = mean ``ttc.samples``;
latency = wall time of one request as the client saw it, queueing at the worker included;
cost-of-pass = all completion tokens / correct answers (None with no correct answer);
accuracy_ci95 = the 95% Wilson score interval of the accuracy.
"""

from __future__ import annotations

import math
import os
import platform
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench.eval import Record, Setting
from bench.stats import latency_summary


def summarise(setting: Setting, records: Sequence[Record]) -> dict[str, Any]:
    """The summary of one setting's records (see the module docstring)."""
    answered = [r for r in records if r.error is None]
    correct = sum(r.correct for r in answered)
    tokens = sum(r.completion_tokens for r in answered)
    thinking = sum(r.reasoning_tokens for r in answered)
    stops = [r.early_stopped for r in answered if r.early_stopped is not None]
    return {
        "setting": setting.name,
        "model": setting.model,
        "ttc": dict(setting.ttc) if setting.ttc is not None else None,
        "questions": len(records),
        "answered": len(answered),
        "errors": len(records) - len(answered),
        "correct": correct,
        "accuracy": _mean_of(correct, len(answered), 4),
        "accuracy_ci95": wilson_interval(correct, len(answered)),
        "completion_tokens_per_question": _mean_of(tokens, len(answered), 2),
        # Thinking and answer (every other completion token: answers, probes, judges) apart.
        "thinking_tokens_per_question": _mean_of(thinking, len(answered), 2),
        "answer_tokens_per_question": _mean_of(tokens - thinking, len(answered), 2),
        "prompt_tokens_per_question": _mean_of(
            sum(r.prompt_tokens for r in answered), len(answered), 2
        ),
        "samples_per_question": _mean_of(sum(r.samples for r in answered), len(answered), 3),
        "early_stop_rate": _mean_of(sum(stops), len(stops), 3),
        "latency_s": latency_summary([r.latency_s for r in answered], scale=1.0),
        "cost_of_pass": _mean_of(tokens, correct, 2),
    }


def _within(tick: float, points: Sequence[tuple[float, float, str]]) -> bool:
    tokens = [p[0] for p in points] or [tick]
    return min(tokens) / 2 <= tick <= max(tokens) * 2


def wilson_interval(correct: int, total: int, z: float = 1.96) -> tuple[float, float] | None:
    """95% Wilson score interval of an accuracy: honest error bars for 60 questions."""
    if total == 0:
        return None
    p = correct / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return (round(max(0.0, centre - half), 4), round(min(1.0, centre + half), 4))


def _mean_of(total: float, count: int, digits: int) -> float | None:
    return round(total / count, digits) if count else None


def machine() -> dict[str, Any]:
    """Where the numbers were measured."""
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
    }


def build_results(
    meta: Mapping[str, Any],
    settings: Sequence[Setting],
    records: Mapping[tuple[str, str], Record],
    question_ids: Sequence[str],
) -> dict[str, Any]:
    """The results document: run parameters, machine, one summary per setting, every record."""
    chosen = [
        records[(s.name, q)] for s in settings for q in question_ids if (s.name, q) in records
    ]
    summaries = [summarise(s, [r for r in chosen if r.setting == s.name]) for s in settings]
    return {
        "meta": dict(meta),
        "machine": machine(),
        "settings": summaries,
        "records": [asdict(r) for r in chosen],
    }


def _fmt(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def results_table(summaries: Sequence[Mapping[str, Any]], title: str) -> Table:
    """Accuracy, tokens, samples, early stops, latency (s), tokens per correct answer, errors."""
    table = Table(title=title)
    table.add_column("setting", no_wrap=True)
    columns = (
        "acc",
        "tok/q",
        "think/q",
        "ans/q",
        "smp/q",
        "early",
        "p50",
        "p90",
        "p99",
        "tok/ok",
        "err",
    )
    for column in columns:
        table.add_column(column, justify="right", no_wrap=True)
    for s in summaries:
        latency = s["latency_s"]
        table.add_row(
            s["setting"],
            _fmt(s["accuracy"], ".1%"),
            _fmt(s["completion_tokens_per_question"], ".1f"),
            _fmt(s.get("thinking_tokens_per_question"), ".1f"),
            _fmt(s.get("answer_tokens_per_question"), ".1f"),
            _fmt(s["samples_per_question"], ".2f"),
            _fmt(s["early_stop_rate"], ".0%"),
            _fmt(latency["p50"], ".2f"),
            _fmt(latency["p90"], ".2f"),
            _fmt(latency["p99"], ".2f"),
            _fmt(s["cost_of_pass"], ".1f"),
            str(s["errors"]),
        )
    return table


def print_table(console: Console, summaries: Sequence[Mapping[str, Any]], title: str) -> None:
    console.print(results_table(summaries, title))


def pareto_front(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """The points no other point beats on both axes (fewer tokens, higher accuracy), by tokens."""
    front: list[tuple[float, float]] = []
    for tokens, accuracy in sorted(points, key=lambda p: (p[0], -p[1])):
        if not front or accuracy > front[-1][1]:
            front.append((tokens, accuracy))
    return front


def pareto_plot(summaries: Sequence[Mapping[str, Any]], path: Path, title: str) -> None:
    """Accuracy against completion tokens per question (log scale), frontier drawn, as PNG."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on servers and CI
    import matplotlib.pyplot as plt
    from matplotlib import ticker

    points = [
        (float(s["completion_tokens_per_question"]), float(s["accuracy"]), str(s["setting"]))
        for s in summaries
        if s["accuracy"] is not None and s["completion_tokens_per_question"]
    ]
    figure, axes = plt.subplots(figsize=(7, 4.5), dpi=120)
    markers = "osD^vP*Xh<>p"
    for i, (tokens, accuracy, name) in enumerate(points):
        axes.scatter(tokens, accuracy * 100, s=40, marker=markers[i % len(markers)], label=name)
    front = pareto_front([(t, a) for t, a, _ in points])
    if len(front) > 1:
        axes.plot([t for t, _ in front], [a * 100 for _, a in front], "--", color="grey", lw=1)
    axes.set_xscale("log")
    axes.xaxis.set_major_formatter(ticker.ScalarFormatter())
    axes.xaxis.set_minor_formatter(ticker.NullFormatter())
    axes.set_xticks(
        [t for t in (10, 20, 50, 100, 200, 500, 1000, 2000, 5000) if _within(t, points)]
    )
    axes.set_xlabel("completion tokens per question (all samples and probes)")
    axes.set_ylabel("accuracy (%)")
    axes.set_title(title)
    axes.legend(loc="lower right", fontsize=8)  # labels beside the points collide when close
    axes.grid(True, which="both", alpha=0.3)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
