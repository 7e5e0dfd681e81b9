"""The mixed-set eval's table and plot, from ``bench.mixed_summary``'s results document.

A figure over several runs reads ``mean [min-max]``; over one run, the value alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rich.table import Table

COLUMNS = (
    ("acc", "accuracy", ".1%"),
    ("tok/req", "completion_tokens_per_request", ".1f"),
    ("x greedy", "tokens_vs_greedy", ".2f"),
    ("smp/req", "samples_per_request", ".2f"),
    ("smp max", "samples_max", ".0f"),
    ("p50 s", "latency_p50_s", ".2f"),
)


# Tick marks of the log token axis, those near the plotted points drawn.
TICKS = (5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)


def cell(figure: Any, spec: str) -> str:
    """A figure as text: ``-`` when absent, ``mean [min-max]`` when it spread over runs."""
    if figure is None:
        return "-"
    if not isinstance(figure, Mapping):
        return format(figure, spec)
    mean = format(figure["mean"], spec)
    if figure["min"] == figure["max"]:
        return mean
    return f"{mean} [{format(figure['min'], spec)}-{format(figure['max'], spec)}]"


def mixed_table(results: Mapping[str, Any], title: str) -> Table:
    """One row per (shape, setting): the summary figures and the errors over all runs."""
    table = Table(title=title)
    table.add_column("shape", no_wrap=True)
    table.add_column("n", justify="right")
    table.add_column("setting", no_wrap=True)
    for header, _, _ in COLUMNS:
        table.add_column(header, justify="right", no_wrap=True)
    table.add_column("err", justify="right")
    for shape, count in results["prompts"].items():
        rows = [
            (s["setting"], s["shapes"][shape]) for s in results["settings"] if shape in s["shapes"]
        ]
        for name, figures in rows:
            errors = sum(run["errors"] for run in figures["runs"])
            values = [cell(figures[key], spec) for _, key, spec in COLUMNS]
            table.add_row(shape, str(count), name, *values, str(errors))
        if rows:
            table.add_section()
    return table


def mixed_plot(results: Mapping[str, Any], path: Path, title: str) -> None:
    """One panel per shape, against completion tokens per request (log scale): accuracy for
    closed prompts, samples per request for the others (they have no accuracy). Tokens count
    every sample, probe and judge; error bars span the runs' min to max."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on servers and CI
    import matplotlib.pyplot as plt

    shapes = [shape for shape, count in results["prompts"].items() if count]
    figure, axes = plt.subplots(1, len(shapes), figsize=(4.2 * len(shapes), 4), dpi=120)
    panels = axes if len(shapes) > 1 else [axes]
    for panel, shape in zip(panels, shapes, strict=True):
        _panel(panel, shape, results["settings"])
    figure.suptitle(title)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)


def _panel(axes: Any, shape: str, settings: Sequence[Mapping[str, Any]]) -> None:
    from matplotlib import ticker

    y_key, y_label, scale = (
        ("accuracy", "accuracy (%)", 100.0)
        if shape == "closed"
        else ("samples_per_request", "samples per request", 1.0)
    )
    markers = "osD^vP*Xh<>p"
    plotted: list[float] = []
    for i, setting in enumerate(settings):
        figures = setting["shapes"].get(shape)
        x, y = (figures or {}).get("completion_tokens_per_request"), (figures or {}).get(y_key)
        if x is None or y is None:
            continue
        axes.errorbar(
            x["mean"],
            y["mean"] * scale,
            xerr=[[x["mean"] - x["min"]], [x["max"] - x["mean"]]],
            yerr=[[(y["mean"] - y["min"]) * scale], [(y["max"] - y["mean"]) * scale]],
            fmt=markers[i % len(markers)],
            capsize=3,
            label=setting["setting"],
        )
        plotted.append(x["mean"])
    axes.set_xscale("log")
    axes.xaxis.set_major_formatter(ticker.ScalarFormatter())
    axes.xaxis.set_minor_formatter(ticker.NullFormatter())
    if plotted:
        low, high = min(plotted) / 2, max(plotted) * 2
        axes.set_xticks([t for t in TICKS if low <= t <= high])
    axes.set_xlabel("completion tokens per request")
    axes.set_ylabel(y_label)
    axes.set_title(shape)
    axes.grid(True, which="both", alpha=0.3)
    if plotted:
        axes.legend(fontsize=7)
