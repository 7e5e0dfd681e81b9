"""``workers.lifeline``: the parent-death signal is armed, and not tied to a passing thread."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time

import pytest

from workers.lifeline import die_with_parent, popen

linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl is Linux's")


READ_OWN = (
    "import ctypes; v = ctypes.c_int(); "
    "ctypes.CDLL(None).prctl(2, ctypes.byref(v), 0, 0, 0); print(v.value)"  # PR_GET_PDEATHSIG
)


@linux
def test_a_child_started_by_popen_carries_the_signal() -> None:
    done = popen([sys.executable, "-c", READ_OWN], stdout=subprocess.PIPE)
    out, _ = done.communicate(timeout=30)
    assert int(out) == signal.SIGTERM
    plain = subprocess.run([sys.executable, "-c", READ_OWN], capture_output=True, check=True)
    assert int(plain.stdout) == 0


@linux
def test_a_child_started_from_a_thread_outlives_that_thread() -> None:
    """The kernel sends the signal when the forking *thread* ends: a worker started from a
    thread pool's thread would die with it. ``popen`` forks from a thread that does not end."""
    started: list[subprocess.Popen[bytes]] = []
    thread = threading.Thread(target=lambda: started.append(popen(["sleep", "30"])))
    thread.start()
    thread.join()
    time.sleep(0.5)  # a signal from the thread's end would have arrived by now
    try:
        assert started[0].poll() is None
    finally:
        started[0].kill()
        started[0].wait()


def test_elsewhere_than_linux_there_is_no_hook(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "platform", "darwin")
    assert die_with_parent() is None
