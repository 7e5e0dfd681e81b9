"""A launched worker's start as ``ttc serve`` reports it: stages, ready, a failure in one line.

The supervisor is the real ``WorkerSupervisor``; the worker is ``stand_in_worker`` (a real
vLLM takes minutes to start on two cores and cannot fail on demand), which writes the lines of
a real vLLM start before it serves, or a real failure's traceback before it exits.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from pathlib import Path

import pytest

from core.profile import PLAIN, ModelProfile
from tests.reliability.harness import port
from workers import launcher
from workers.config import LaunchConfig
from workers.launcher import WorkerSupervisor
from workers.startup import Progress


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TTC_CACHE_DIR", str(tmp_path))
    return tmp_path


def stand_in(monkeypatch: pytest.MonkeyPatch, *flags: str) -> None:
    def build(
        launch: LaunchConfig, profile: ModelProfile = PLAIN
    ) -> tuple[list[str], dict[str, str]]:
        module = "tests.reliability.stand_in_worker"
        cmd = [sys.executable, "-m", module, "--port", str(launch.port), *flags]
        return cmd, dict(os.environ)

    monkeypatch.setattr(launcher, "build", build)


def progress(caplog: pytest.LogCaptureFixture) -> list[Progress]:
    found = (getattr(r, "progress", None) for r in caplog.records)
    return [p for p in found if isinstance(p, Progress)]


async def until(condition: object, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not callable(condition) or not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.1)


async def test_a_start_reports_each_stage_then_ready(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, cache: Path
) -> None:
    stand_in(monkeypatch)
    caplog.set_level(logging.INFO, logger="ttc.worker")
    supervisor = WorkerSupervisor(LaunchConfig(port=port(), restart=False))
    await supervisor.start()
    try:
        await until(lambda: any(p.done for p in progress(caplog)))
    finally:
        await supervisor.stop()
    stages = [p.stage for p in progress(caplog)]
    assert stages == [
        "launching vLLM",
        "loading the model",
        "warming up the model",
        "allocating the KV cache",
        "starting the API server",
        "ready",
    ]
    # vLLM's own lines are in the log file, not among the records the terminal shows.
    assert supervisor.log_path == cache / "logs" / f"worker-{supervisor.launch.port}.log"
    assert "Triton is not installed" in supervisor.log_path.read_text()
    assert not any("Triton" in r.getMessage() for r in caplog.records)
    ready = caplog.records[-1].getMessage()
    assert f"ready on {supervisor.launch.url}" in ready and str(supervisor.log_path) in ready


async def test_worker_logs_bring_the_raw_output_back(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    stand_in(monkeypatch)
    caplog.set_level(logging.INFO, logger="ttc.worker")
    caplog.set_level(logging.DEBUG, logger="ttc.worker.output")  # what --worker-logs sets
    supervisor = WorkerSupervisor(LaunchConfig(port=port(), restart=False))
    await supervisor.start()
    try:
        await until(lambda: any(p.done for p in progress(caplog)))
    finally:
        await supervisor.stop()
    raw = [r.getMessage() for r in caplog.records if r.name == "ttc.worker.output"]
    assert any("Triton is not installed" in line for line in raw)


async def test_a_failed_start_says_why_in_one_line_and_where_the_log_is(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    stand_in(monkeypatch, "--fail")
    caplog.set_level(logging.INFO, logger="ttc.worker")
    supervisor = WorkerSupervisor(LaunchConfig(port=port(), restart=False))
    await supervisor.start()
    assert supervisor._task is not None
    await asyncio.wait_for(supervisor._task, 30.0)
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [
        "worker smollm2-135m failed to start (exit code 1): ValueError: 2 GiB of KV cache do"
        f" not fit in the memory left; full log: {supervisor.log_path}"
    ]
    assert "Engine core initialization failed" in supervisor.log_path.read_text()
