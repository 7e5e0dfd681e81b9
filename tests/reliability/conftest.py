"""Shows the figures every reliability case reported, at the end of the run (stdout)."""

from __future__ import annotations

import json

import pytest

from tests.reliability.harness import FIGURES, RESULTS, form


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not FIGURES:
        return
    terminalreporter.section(f"reliability figures ({form().name} form, JSON in {RESULTS})")
    for case, figures in FIGURES.items():
        terminalreporter.write_line(f"{case}: {json.dumps(figures, sort_keys=False)}")
