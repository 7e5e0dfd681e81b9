"""Processes started by a test run, or by a gateway, die with it however it ends.

A CI timeout sends SIGTERM to pytest; an out-of-memory kill or a stuck run's cleanup sends
SIGKILL; neither runs a fixture's teardown, and a gateway killed with SIGKILL never stops the
worker it launched. Each case starts the processes, kills their starter with the signal, and
asserts that no process it started survives. Every process of a case carries a marker in its
environment (children inherit it), so survivors are found in ``/proc`` whatever they are.
Long-lived children are stand-ins (``stand_in_worker``, a sleeping Python), not vLLM: what is
tested is the processes' lifetime, and a real worker would take minutes to start.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.reliability.harness import port

CASE = Path(__file__).with_name("orphans_case.py")
ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc, prctl")


def processes() -> dict[int, tuple[int, bytes]]:
    """Every live process: pid -> (parent pid, start time: a reused pid has another)."""
    found: dict[int, tuple[int, bytes]] = {}
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError, ValueError, IndexError):
            # /proc/PID/stat: "pid (comm) state ppid ..." and field 22 the start time; the
            # command may hold spaces and parentheses, so split after its last ")".
            fields = (entry / "stat").read_bytes().rsplit(b")", 1)[1].split()
            if fields[0] != b"Z":  # a zombie has ended; only its parent has yet to reap it
                found[int(entry.name)] = (int(fields[1]), fields[19])
    return found


def marked(mark: str) -> set[tuple[int, bytes]]:
    """Live processes whose environment carries ``mark`` (children inherit it), as (pid,
    start time). A process may rewrite its environment's memory (redis-server does, for its
    title): ``descendants`` finds those."""
    found = set()
    for pid, (_, started) in processes().items():
        with contextlib.suppress(OSError):
            variables = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            if f"TTC_ORPHAN_MARK={mark}".encode() in variables:
                found.add((pid, started))
    return found


def descendants(root: int) -> set[tuple[int, bytes]]:
    """``root`` and every live process below it, as (pid, start time)."""
    table = processes()
    found, frontier = set(), [root]
    while frontier:
        pid = frontier.pop()
        if pid in table:
            found.add((pid, table[pid][1]))
            frontier += [child for child, (parent, _) in table.items() if parent == pid]
    return found


def alive(started: set[tuple[int, bytes]]) -> dict[int, str]:
    """Those of ``started`` still running: pid -> command line."""
    table = processes()
    out = {}
    for pid, start in started:
        if pid in table and table[pid][1] == start:
            with contextlib.suppress(OSError):
                out[pid] = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    return out


@contextlib.contextmanager
def marked_env() -> Iterator[tuple[str, dict[str, str], set[tuple[int, bytes]]]]:
    """A fresh marker, an environment carrying it, and a set to add other processes to;
    SIGKILLs whatever of them is left at the end, so a failing case leaves nothing behind."""
    mark, extra = uuid.uuid4().hex, set[tuple[int, bytes]]()
    try:
        yield mark, {**os.environ, "TTC_ORPHAN_MARK": mark}, extra
    finally:
        for pid in alive(marked(mark) | extra):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def survivors(started: set[tuple[int, bytes]], mark: str, timeout_s: float) -> dict[int, str]:
    """What is still alive of ``started`` or carries ``mark`` after ``timeout_s`` (a graceful
    stop takes a moment)."""
    deadline = time.monotonic() + timeout_s
    while (left := alive(started | marked(mark))) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


def wait_for(path: Path, proc: subprocess.Popen[bytes], log: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        assert proc.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.2)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_a_killed_test_run_leaves_no_process(sig: int, tmp_path: Path) -> None:
    ready, log = tmp_path / "ready", tmp_path / "pytest.log"
    with marked_env() as (mark, env, started):
        env["TTC_ORPHANS_READY"] = str(ready)
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
        cmd += ["--basetemp", str(tmp_path / "inner"), str(CASE)]
        with log.open("wb") as out:
            run = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            wait_for(ready, run, log, 120.0)
            started |= marked(mark) | descendants(run.pid)
            names = " ".join(alive(started).values())
            for child in ("ttc.cli serve", "redis-server", "fake_worker", "stand_in_worker"):
                assert child in names, names
            run.send_signal(sig)
            run.wait(30)
            assert survivors(started, mark, 40.0) == {}
        finally:
            if run.poll() is None:
                run.kill()
                run.wait()


LAUNCHER = """
import os, sys, uvloop
from workers import launcher
from workers.config import LaunchConfig

cmd = [sys.executable, "-m", "tests.reliability.stand_in_worker", "--quiet", "--port", "{port}"]
launcher.build = lambda launch, profile=None: (cmd, dict(os.environ))
launch = LaunchConfig(port={port})
if sys.argv[1] == "foreground":
    launcher.run_foreground(launch)
else:
    async def serve():
        await launcher.WorkerSupervisor(launch).start()
        await __import__("asyncio").sleep(600)
    uvloop.run(serve())  # ttc serve's loop (uvicorn runs on uvloop)
"""


def launched(launcher: int) -> bool:
    """Has ``launcher`` started its worker yet (a process below it, not itself)?"""
    below = alive(descendants(launcher))
    return any("stand_in_worker" in line for pid, line in below.items() if pid != launcher)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
@pytest.mark.parametrize("how", ["supervisor", "foreground"])
def test_a_launched_worker_dies_with_its_launcher(how: str, sig: int, tmp_path: Path) -> None:
    """``ttc serve``'s supervisor and ``ttc worker``: the worker they launched outlives
    neither, not even a SIGKILL that runs none of their own shutdown."""
    log = tmp_path / "launcher.log"
    with marked_env() as (mark, env, started):
        env["TTC_CACHE_DIR"] = str(tmp_path)
        code = LAUNCHER.format(port=port())
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-c", code, how], cwd=ROOT, env=env, stdout=out, stderr=out
            )
        try:
            deadline = time.monotonic() + 30.0
            while not launched(proc.pid):
                assert proc.poll() is None, log.read_text()
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
            started |= marked(mark) | descendants(proc.pid)
            proc.send_signal(sig)
            proc.wait(30)
            assert survivors(started, mark, 20.0) == {}
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
