"""Figures of a mixed-set eval, per setting and answer shape, over repeated runs.

Per run, over the shape's requests answered without error: ``accuracy`` = correct / answered
(closed shape only: open and many-valid prompts have no single right answer, so None);
``completion_tokens_per_request`` = mean ``usage.completion_tokens`` as the gateway reported
it (every sample, probe and judge token); ``samples_per_request`` = mean ``ttc.samples``;
``samples_max`` = the most samples one request drew; ``latency_p50_s`` = the median wall time
of one request as the client saw it. Across runs, each figure is reported as its mean, min,
max and sample standard deviation (0 for a single run), next to the per-run values.
``tokens_vs_greedy`` = the mean tokens per request over those of the ``greedy`` setting on the
same shape (when the run has one): the "x one greedy sample" of the issue's targets.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import Any

from bench.eval import Record, Setting
from bench.mixed import SHAPES, Prompt
from bench.report import machine
from bench.stats import percentile, ratio

FIGURES = (
    "accuracy",
    "completion_tokens_per_request",
    "samples_per_request",
    "samples_max",
    "latency_p50_s",
)
GREEDY = "greedy"

Records = Mapping[tuple[str, str], Record]


def run_figures(records: Sequence[Record], *, scored: bool) -> dict[str, Any]:
    """One run's figures over one shape's records (accuracy only when ``scored``)."""
    answered = [r for r in records if r.error is None]
    count = len(answered)

    def mean(total: float, digits: int) -> float | None:
        return round(total / count, digits) if count else None

    latency = percentile([r.latency_s for r in answered], 50)
    return {
        "requests": len(records),
        "errors": len(records) - count,
        "accuracy": mean(sum(r.correct for r in answered), 4) if scored else None,
        "completion_tokens_per_request": mean(sum(r.completion_tokens for r in answered), 2),
        "samples_per_request": mean(sum(r.samples for r in answered), 3),
        "samples_max": max((r.samples for r in answered), default=None),
        "latency_p50_s": None if latency is None else round(latency, 3),
    }


def spread_of(values: Sequence[float | None]) -> dict[str, float] | None:
    """Mean, min, max and sample standard deviation of the runs that have a value."""
    present = [float(v) for v in values if v is not None]
    if not present:
        return None
    stdev = statistics.stdev(present) if len(present) > 1 else 0.0
    return {
        "mean": round(statistics.fmean(present), 4),
        "min": round(min(present), 4),
        "max": round(max(present), 4),
        "stdev": round(stdev, 4),
    }


def shape_summary(
    setting: str, runs: Sequence[Records], ids: Sequence[str], *, scored: bool
) -> dict[str, Any]:
    """One setting's figures on one shape's prompts: per run, and their spread across runs."""
    per_run = [
        run_figures([run[(setting, i)] for i in ids if (setting, i) in run], scored=scored)
        for run in runs
    ]
    summary: dict[str, Any] = {"prompts": len(ids)}
    summary.update({figure: spread_of([r[figure] for r in per_run]) for figure in FIGURES})
    summary["runs"] = per_run
    return summary


def summarise_settings(
    settings: Sequence[Setting], runs: Sequence[Records], prompts: Sequence[Prompt]
) -> list[dict[str, Any]]:
    """Per setting: its request shape and, per answer shape present, its summary."""
    ids = {shape: [p.id for p in prompts if p.shape == shape] for shape in SHAPES}
    present = [shape for shape in SHAPES if ids[shape]]
    summaries = [
        {
            "setting": s.name,
            "model": s.model,
            "ttc": dict(s.ttc) if s.ttc is not None else None,
            "temperature": s.temperature,
            "shapes": {
                shape: shape_summary(s.name, runs, ids[shape], scored=shape == "closed")
                for shape in present
            },
        }
        for s in settings
    ]
    _add_greedy_ratio(summaries)
    return summaries


def _add_greedy_ratio(summaries: Sequence[dict[str, Any]]) -> None:
    greedy = next((s for s in summaries if s["setting"] == GREEDY), None)
    for summary in summaries:
        for shape, figures in summary["shapes"].items():
            base = greedy["shapes"][shape] if greedy else None
            figures["tokens_vs_greedy"] = ratio(_mean(figures), _mean(base)) if base else None


def _mean(figures: Mapping[str, Any]) -> float | None:
    tokens = figures["completion_tokens_per_request"]
    return None if tokens is None else float(tokens["mean"])


def build_mixed_results(
    meta: Mapping[str, Any],
    settings: Sequence[Setting],
    runs: Sequence[Records],
    prompts: Sequence[Prompt],
) -> dict[str, Any]:
    """The results document: parameters, machine, prompt counts, summaries, every record."""
    shape_of = {p.id: p.shape for p in prompts}
    names = {s.name for s in settings}
    # An open or many-valid reply is neither right nor wrong: its record says so (None).
    records = [
        {**asdict(r), "run": number, "shape": shape_of[r.id]}
        | ({} if shape_of[r.id] == "closed" else {"correct": None})
        for number, run in enumerate(runs, start=1)
        for key, r in sorted(run.items())
        if key[0] in names and r.id in shape_of
    ]
    return {
        "meta": dict(meta),
        "machine": machine(),
        "prompts": {shape: sum(p.shape == shape for p in prompts) for shape in SHAPES},
        "settings": summarise_settings(settings, runs, prompts),
        "records": records,
    }
