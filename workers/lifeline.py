"""Child processes that die with the process that started them, however it ends.

A worker outliving its parent keeps both cores busy for nobody: a test run killed by a CI
timeout (SIGTERM) or by SIGKILL runs no teardown, and a gateway killed with SIGKILL never
stops the vLLM it launched. Linux's parent-death signal (``prctl(PR_SET_PDEATHSIG)``), set in
the child between fork and exec, makes the kernel signal the child when its parent dies, for
any cause, SIGKILL included. The signal is SIGTERM by default, so the child shuts down as it
does when stopped normally (vLLM stops its engine processes, ``ttc serve`` its workers, and
each of those children carries the same signal towards its own parent).

The kernel ties the signal to the *thread* that forked, not to the process: a child started
from a worker thread would be killed when that thread ends. ``popen`` therefore forks from the
main thread as is and otherwise from one long-lived thread of its own that ends only with the
process. Elsewhere than Linux there is no such signal: ``die_with_parent`` is None there and
children are stopped only by their parent's own shutdown.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>

# Forks for callers that are not the main thread; its one thread lives as long as the process.
_spawner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lifeline")


def die_with_parent(sig: int = signal.SIGTERM) -> Callable[[], None] | None:
    """A ``preexec_fn``: the child gets ``sig`` when the calling thread's process dies.

    The parent's pid is taken now; a parent that died between the fork and the ``prctl`` is
    caught by comparing it with the child's parent after, so no child escapes by that race.
    """
    if not sys.platform.startswith("linux"):
        return None
    parent = os.getpid()
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # resolved before the fork, not in the child

    def arm() -> None:
        if prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
        if os.getppid() != parent:
            os.kill(os.getpid(), sig)

    return arm


def popen(
    args: Sequence[str], *, sig: int = signal.SIGTERM, **kwargs: Any
) -> subprocess.Popen[bytes]:
    """``subprocess.Popen(args, **kwargs)`` whose child gets ``sig`` when this process dies."""

    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen(args, preexec_fn=die_with_parent(sig), **kwargs)

    if threading.current_thread() is threading.main_thread():
        return start()
    return _spawner.submit(start).result()
