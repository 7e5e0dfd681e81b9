"""What ``ttc serve`` shows: the gateway's log lines, one line per starting worker, "ready".

Every log record goes through one ``ServeOutput`` handler that prints with a rich console on
stderr, so a line printed while a worker starts lands above the progress line instead of
through it. A record carrying a ``workers.startup.Progress`` is that progress: on a terminal it
updates the worker's line in place (elapsed time ticking) and is printed once it is done; off
a terminal (a pipe, a log file, CI) each one is printed, and vLLM's start gives one per stage.
Raw worker output (``ttc serve --worker-logs``) is printed as vLLM wrote it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence

import httpx
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.spinner import Spinner

from workers.startup import Progress

FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


class ServeOutput(logging.Handler):
    """Prints log records on ``console``; progress records as described in the module."""

    def __init__(self, console: Console) -> None:
        super().__init__()
        self.console = console
        self.starting: dict[str, Progress] = {}
        self._live: Live | None = None

    def emit(self, record: logging.LogRecord) -> None:
        try:
            progress = getattr(record, "progress", None)
            if isinstance(progress, Progress) and self.console.is_terminal:
                self._show(progress)
                if not progress.done:
                    return
            text = record.getMessage() if getattr(record, "raw", False) else self.format(record)
            self.console.print(text, markup=False, highlight=False, emoji=False, soft_wrap=True)
        except Exception:  # a handler never raises into the code that logged
            self.handleError(record)

    def _show(self, progress: Progress) -> None:
        if progress.done:
            self.starting.pop(progress.worker, None)
        else:
            self.starting[progress.worker] = progress
        if self.starting and self._live is None:
            self._live = Live(
                _Lines(self.starting), console=self.console, transient=True, refresh_per_second=4
            )
            self._live.start()
        elif not self.starting and self._live is not None:
            self._live.stop()
            self._live = None

    def close(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None
        super().close()


class _Lines:
    """The live region: one spinner line per starting worker, elapsed time computed at each
    refresh."""

    def __init__(self, starting: dict[str, Progress]) -> None:
        self.starting = starting
        self.spinners: dict[str, Spinner] = {}

    def __rich__(self) -> RenderableType:
        now = time.monotonic()
        lines = []
        for name, progress in list(self.starting.items()):
            spinner = self.spinners.setdefault(name, Spinner("dots"))
            spinner.update(text=progress.line(now))
            lines.append(spinner)
        return Group(*lines)


def base_url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def probe_url(host: str, port: int) -> str:
    """Where this process reaches its own gateway: loopback when it listens everywhere."""
    loopback = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}
    return base_url(loopback.get(host, host), port)


def announce_ready(
    console: Console, url: str, probe_url: str, models: Sequence[str], interval_s: float = 1.0
) -> threading.Thread:
    """Print "ready on URL" with the model list once ``probe_url``'s ``/ready`` answers 200
    (every tier has a healthy worker); a daemon thread that polls until then."""

    def wait() -> None:
        while True:
            try:
                if httpx.get(probe_url + "/ready", timeout=2.0, trust_env=False).is_success:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(interval_s)
        console.print(f"ready on {url} · models: {', '.join(models)}", highlight=False)

    thread = threading.Thread(target=wait, name="announce-ready", daemon=True)
    thread.start()
    return thread
