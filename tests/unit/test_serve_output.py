"""``ttc serve``'s terminal: one updating line per starting worker on a terminal, one line per
stage elsewhere, log lines printed whole in both."""

from __future__ import annotations

import io
import logging

from rich.console import Console

from ttc.serve_output import FORMAT, ServeOutput, base_url, probe_url
from workers.startup import Progress


def handler(terminal: bool) -> tuple[ServeOutput, io.StringIO]:
    out = io.StringIO()
    console = Console(file=out, force_terminal=terminal, width=200, color_system=None)
    output = ServeOutput(console)
    output.setFormatter(logging.Formatter(FORMAT))
    return output, out


def record(message: str, **extra: object) -> logging.LogRecord:
    made = logging.LogRecord("ttc.worker", logging.INFO, __file__, 1, message, (), None)
    made.__dict__.update(extra)
    return made


def progress(stage: str, done: bool = False) -> logging.LogRecord:
    state = Progress("smollm2-135m", stage, 0.0, done=done)
    return record(state.line(now=5.0), progress=state)


def test_off_a_terminal_each_stage_is_one_line() -> None:
    output, out = handler(terminal=False)
    for stage in ("launching vLLM", "loading the model"):
        output.emit(progress(stage))
    output.emit(progress("ready", done=True))
    lines = out.getvalue().splitlines()
    assert len(lines) == 3
    assert lines[1].endswith(
        "INFO ttc.worker starting worker smollm2-135m: loading the model · 5 s"
    )


def test_on_a_terminal_stages_update_one_line_and_only_the_end_is_kept() -> None:
    output, out = handler(terminal=True)
    output.emit(progress("loading the model"))
    assert output._live is not None and output._live.is_started
    output.emit(record("a gateway line"))
    output.emit(progress("warming up the model"))
    assert list(output.starting) == ["smollm2-135m"]
    output.emit(progress("ready", done=True))
    assert output._live is None and not output.starting
    printed = out.getvalue()
    assert "INFO ttc.worker a gateway line" in printed
    assert printed.rstrip().endswith("starting worker smollm2-135m: ready · 5 s")


def test_raw_worker_output_is_printed_as_the_worker_wrote_it() -> None:
    output, out = handler(terminal=False)
    output.emit(record("(APIServer pid=1) INFO [api.py:1] vLLM 0.32 [bold]", raw=True))
    assert out.getvalue() == "(APIServer pid=1) INFO [api.py:1] vLLM 0.32 [bold]\n"


def test_ready_names_the_address_served_and_probes_it_on_loopback() -> None:
    assert base_url("127.0.0.1", 8000) == "http://127.0.0.1:8000"
    assert base_url("::1", 8000) == "http://[::1]:8000"
    assert probe_url("0.0.0.0", 8000) == "http://127.0.0.1:8000"
    assert probe_url("::", 8000) == "http://[::1]:8000"
    assert probe_url("10.0.0.5", 8000) == "http://10.0.0.5:8000"
