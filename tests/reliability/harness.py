"""Processes and figures shared by the reliability cases: a ``ttc serve`` subprocess, fake
workers, a private Redis, a mixed stream / non-stream load, and the report of each case.

Everything the cases start listens on loopback ports 8600-8699 (``port()``), runs in its own
session and is stopped by its own process id. The form of the suite (``form()``) is short by
default (CI, inside ``make test``) and full with ``TTC_RELIABILITY=full`` (``make
reliability``): more clients, longer phases, more fuzzed cases. Figures of each case go to
``bench/results/reliability/<case>-<form>.json`` and, at the end of the run, to the terminal.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import yaml

from workers.lifeline import popen  # children die with the test run, also a killed one

RESULTS = Path(__file__).resolve().parents[2] / "bench" / "results" / "reliability"
PORTS = range(8600, 8700)
FIGURES: dict[str, dict[str, Any]] = {}  # case -> figures, printed by conftest at the end
_handed_out: set[int] = set()


@dataclass(frozen=True)
class Form:
    """How big a run is: ``short`` in CI (a few CPU seconds a case), ``full`` on demand."""

    name: str
    clients: int
    phase_s: float
    repeats: int
    fuzz_cases: int


def form() -> Form:
    if os.environ.get("TTC_RELIABILITY") == "full":
        return Form("full", clients=6, phase_s=8.0, repeats=30, fuzz_cases=1500)
    return Form("short", clients=3, phase_s=2.0, repeats=4, fuzz_cases=150)


def port() -> int:
    """A free loopback port in 8600-8699 not yet handed out by this process."""
    for candidate in PORTS:
        if candidate in _handed_out:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", candidate))
            except OSError:
                continue
        _handed_out.add(candidate)
        return candidate
    raise RuntimeError("no free port in 8600-8699")


def spawn(command: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def kill(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, grace_s: float = 10.0) -> None:
    """Signal the process group ``proc`` leads (its own session), SIGKILL after ``grace_s``."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def wait_http(url: str, timeout_s: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process for {url} exited with {proc.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1.0, trust_env=False).status_code == 200:
                return
        time.sleep(0.1)
    raise TimeoutError(f"{url} not ready after {timeout_s:.0f} s")


@dataclass
class Gateway:
    """A running ``ttc serve`` subprocess and where it logs."""

    url: str
    proc: subprocess.Popen[bytes]
    log: Path

    def metric(self, name: str, labels: str = "") -> float:
        """The sum of every sample of ``name`` whose labels contain ``labels``."""
        text = httpx.get(self.url + "/metrics", trust_env=False, timeout=5).text
        pattern = rf"^{re.escape(name)}(\{{[^}}]*\}})? (\S+)$"
        return sum(
            float(m.group(2))
            for m in re.finditer(pattern, text, re.M)
            if labels in (m.group(1) or "")
        )


@contextlib.contextmanager
def gateway(config: Mapping[str, Any], folder: Path, ready: str = "/ready") -> Iterator[Gateway]:
    """``ttc serve`` with ``config`` on a port of ours; stopped (SIGTERM) on the way out."""
    gateway_port = port()
    (folder / "gateway.yaml").write_text(yaml.safe_dump(dict(config)))
    log = folder / "gateway.log"
    command = [
        sys.executable,
        "-m",
        "ttc.cli",
        "serve",
        "--config",
        str(folder / "gateway.yaml"),
        "--port",
        str(gateway_port),
    ]
    proc = spawn(command, log)
    url = f"http://127.0.0.1:{gateway_port}"
    try:
        wait_http(url + ready, 60.0, proc)
        yield Gateway(url, proc, log)
    finally:
        kill(proc)


def single_tier(name: str, model: str, *endpoints: str, **sections: Any) -> dict[str, Any]:
    """A gateway config: tier ``name`` (``model`` upstream) on ``endpoints``, every band
    ``single``, no probe; ``sections`` are merged in."""
    config: dict[str, Any] = {
        "tiers": {name: {"model": model, "endpoints": list(endpoints)}},
        "router": {"bands": [{"name": "all", "policy": "single"}], "probe": {"mode": "never"}},
        "server": {"log_level": "warning"},
    }
    for key, value in sections.items():
        config[key] = {**config.get(key, {}), **value}
    return config


def fast_upstream(model: str, folder: Path) -> tuple[str, subprocess.Popen[bytes]]:
    """``bench.fast_upstream`` (answers at once) on a port of ours."""
    upstream_port = port()
    command = [
        sys.executable,
        "-m",
        "bench.fast_upstream",
        "--port",
        str(upstream_port),
        "--model",
        model,
    ]
    proc = spawn(command, folder / f"upstream-{upstream_port}.log")
    url = f"http://127.0.0.1:{upstream_port}"
    wait_http(url + "/health", 30.0, proc)
    return url, proc


@contextlib.contextmanager
def gateway_on_fast_upstream(folder: Path) -> Iterator[Gateway]:
    """A ``ttc serve`` with one tier ``fast`` in front of ``bench.fast_upstream``."""
    upstream, upstream_proc = fast_upstream("fast", folder)
    try:
        with gateway(single_tier("fast", "fast", upstream), folder) as running:
            yield running
    finally:
        kill(upstream_proc)


def fake_worker(worker_port: int, folder: Path) -> subprocess.Popen[bytes]:
    """A ``tests.reliability.fake_worker`` process on ``worker_port``, once it answers."""
    command = [sys.executable, "-m", "tests.reliability.fake_worker", "--port", str(worker_port)]
    proc = spawn(command, folder / f"worker-{worker_port}.log")
    wait_http(f"http://127.0.0.1:{worker_port}/health", 30.0, proc)
    return proc


@dataclass
class Report:
    """The figures of one case: written as JSON and shown at the end of the run."""

    case: str
    figures: dict[str, Any] = field(default_factory=dict)

    def write(self) -> Path:
        run = form()
        FIGURES[self.case] = self.figures
        RESULTS.mkdir(parents=True, exist_ok=True)
        path = RESULTS / f"{self.case}-{run.name}.json"
        meta = {
            "case": self.case,
            "form": run.name,
            "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        path.write_text(json.dumps({**meta, **self.figures}, indent=2) + "\n")
        return path
