"""What a launched vLLM worker is doing while it starts, read from its own output.

vLLM writes about a hundred lines while it starts, warnings a newcomer reads as breakage among
them; ``WorkerSupervisor`` sends them to a log file instead and reports the start as a few
stages (``STAGES``), each one ``Progress`` record on the ``ttc.worker`` logger. ``ttc serve``
shows those as one line that it updates in place on a terminal; elsewhere each stage change is
one log line. A worker that exits is explained in one line (``why_it_failed``).
"""

from __future__ import annotations

import logging
import re
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("ttc.worker")
# vLLM's own output, line by line, at DEBUG: `ttc serve --worker-logs` or `log_level: debug`.
output_log = logging.getLogger("ttc.worker.output")

# The lines of vLLM 0.32 that open each stage, in start order. An unknown line keeps the
# stage; a line that matches an earlier stage again (vLLM warms up more than once) does not
# move the stage back.
STAGES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("loading the model", re.compile(r"Starting to load model")),
    ("warming up the model", re.compile(r"Warming up model")),
    ("allocating the KV cache", re.compile(r"GiB for KV cache|[CG]PU KV cache size")),
    ("starting the API server", re.compile(r"Starting vLLM (API )?server|Available routes")),
)
LAUNCHING = "launching vLLM"

# ``(EngineCore pid=12) `` and ``ERROR 12-07 17:54:24 [core.py:133] ``: the prefixes vLLM puts
# before a message.
_PREFIX = re.compile(
    r"^\s*(\([\w:-]+ pid=\d+\)\s*)?"
    r"((DEBUG|INFO|WARNING|ERROR|CRITICAL) [\d-]+ [\d:.]+ \[[^\]]*\]\s*)?"
)
# A traceback's last line (``ValueError: ...``): the exception that ended a process.
_EXCEPTION = re.compile(r"^[\w.]*(Error|Exception|Interrupt|Exit)\b:?")


@dataclass(frozen=True)
class Progress:
    """One worker's start so far: ``stage`` since ``started`` (``time.monotonic``)."""

    worker: str
    stage: str
    started: float
    hint: str = ""  # what to expect, e.g. how long a first start takes
    done: bool = False  # ready (or given up): the last record of this start

    def line(self, now: float | None = None) -> str:
        elapsed = (time.monotonic() if now is None else now) - self.started
        hint = f" ({self.hint})" if self.hint and not self.done else ""
        return f"starting worker {self.worker}: {self.stage} · {elapsed:.0f} s{hint}"


def stage_of(line: str, current: str) -> str:
    """The stage ``line`` opens, or ``current``; never a stage before ``current``."""
    names = [name for name, _ in STAGES]
    floor = names.index(current) if current in names else -1
    for position, (name, pattern) in enumerate(STAGES):
        if position > floor and pattern.search(line):
            floor, current = position, name
    return current


def message_of(line: str) -> str:
    """``line`` without vLLM's process and level prefixes."""
    return _PREFIX.sub("", line, count=1).strip()


def why_it_failed(lines: Iterable[str]) -> str:
    """One line that says why a worker exited, from the last lines of its output.

    The first exception line (a traceback's last line) is the root cause: vLLM's API server
    ends with a generic ``RuntimeError: Engine core initialization failed. See root cause
    above`` after the engine's own traceback. Without one, the last ERROR line; else the last
    line; else a note that the worker said nothing.
    """
    messages = [(line, message_of(line)) for line in lines if line.strip()]
    for _, message in messages:
        if _EXCEPTION.match(message):
            return message
    for line, message in reversed(messages):
        if " ERROR " in line or " CRITICAL " in line:
            return message
    return messages[-1][1] if messages else "it wrote nothing"


class StartWatch:
    """Follows one start of one worker: its stage from the output lines, its last lines for a
    failure's explanation, and a ``Progress`` record on each stage change."""

    TAIL = 200  # lines kept for why_it_failed: a traceback fits

    def __init__(self, worker: str, log_path: Path, hint: str = "") -> None:
        self.progress = Progress(worker, LAUNCHING, time.monotonic(), hint)
        self.log_path = log_path
        self.tail: deque[str] = deque(maxlen=self.TAIL)
        self.ready = False
        self._report()

    def saw(self, line: str) -> None:
        """One line of the worker's output."""
        self.tail.append(line)
        output_log.debug("%s", line, extra={"raw": True})
        if self.ready:
            return
        stage = stage_of(line, self.progress.stage)
        if stage != self.progress.stage:
            self.progress = Progress(
                self.progress.worker, stage, self.progress.started, self.progress.hint
            )
            self._report()

    def answered(self, url: str) -> None:
        """Its ``/health`` answered 200: the start is over."""
        self.ready = True
        elapsed = time.monotonic() - self.progress.started
        self.progress = Progress(self.progress.worker, "ready", self.progress.started, done=True)
        log.info(
            "worker %s ready on %s after %.0f s (its log: %s)",
            self.progress.worker,
            url,
            elapsed,
            self.log_path,
            extra={"progress": self.progress},
        )

    def exited(self, code: int | None, restarting: bool) -> None:
        """The process ended: say why in one line, and where the whole log is."""
        what = "exited" if self.ready else "failed to start"
        then = "; restarting it" if restarting else ""
        self.progress = Progress(self.progress.worker, what, self.progress.started, done=True)
        log.error(
            "worker %s %s (exit code %s): %s; full log: %s%s",
            self.progress.worker,
            what,
            code,
            why_it_failed(self.tail),
            self.log_path,
            then,
            extra={"progress": self.progress},
        )

    def _report(self) -> None:
        log.info("%s", self.progress.line(), extra={"progress": self.progress})
