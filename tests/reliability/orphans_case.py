"""A test run to be killed, run only by ``test_orphans`` (its name keeps pytest from
collecting it otherwise).

It starts the suite's long-lived processes through the fixtures that start them in real runs
(a ``ttc serve`` gateway and a private Redis from the integration fixtures, a fake worker from
the reliability harness, and the stand-in worker through the same helper the session's vLLM
worker uses), writes ``$TTC_ORPHANS_READY`` and waits to be killed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from tests.integration.conftest import (  # noqa: F401 (fixtures used by name)
    gateway_config,
    redis_server,
    session_worker,
    start_gateway,
)
from tests.reliability.harness import fake_worker, port
from workers.lifeline import popen


def stand_in(worker_port: int, log: Path) -> subprocess.Popen[bytes]:
    """What ``start_worker`` does for vLLM, for a stand-in worker (no minutes of warm-up)."""
    cmd = [sys.executable, "-m", "tests.reliability.stand_in_worker", "--port", str(worker_port)]
    with log.open("wb") as out:
        return popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def test_wait_to_be_killed(
    start_gateway: Callable[..., str],  # noqa: F811 (the imported fixture, by name)
    redis_server: object,  # noqa: F811
    tmp_path: Path,
) -> None:
    worker_port = port()
    fake_worker(worker_port, tmp_path)
    workers = session_worker("TTC_ORPHANS_NO_REUSE", stand_in, tmp_path)
    worker = next(workers)
    start_gateway(gateway_config(worker), wait_ready=False)
    Path(os.environ["TTC_ORPHANS_READY"]).write_text("ready\n")
    time.sleep(600)
