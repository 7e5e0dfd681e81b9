"""Start, wait for and stop the processes of the overhead bench: upstream, gateway, LiteLLM.

Each is started in its own session (so it and any workers it forks form one process group) with
its output in a log file, and stopped by signalling that group: SIGTERM, then SIGKILL after
``STOP_GRACE_S``. Readiness is polled over HTTP; a process that exits first is an error.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

# 10 s: uvicorn's graceful shutdown with idle keep-alive connections takes well under this.
STOP_GRACE_S = 10.0
# A random long key: LiteLLM refuses short master keys.
LITELLM_KEY = "sk-ttc-bench-5f0c1e2d3a4b5c6d7e8f9a0b1c2d3e4f"


class StartError(RuntimeError):
    """A bench process did not become ready; the message names its log file."""


@dataclass
class Started:
    name: str
    process: subprocess.Popen[bytes]
    url: str
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start(
    name: str,
    command: Sequence[str],
    url: str,
    ready_path: str,
    workdir: Path,
    env: Mapping[str, str] | None = None,
    timeout_s: float = 120.0,
) -> Started:
    """Run ``command``, then wait until ``GET url+ready_path`` answers 200."""
    log = workdir / f"{name}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            list(command),
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
    started = Started(name, process, url, log)
    try:
        _wait_ready(started, ready_path, timeout_s)
    except BaseException:
        stop(started)
        raise
    return started


def _wait_ready(started: Started, path: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if started.process.poll() is not None:
            raise StartError(
                f"{started.name} exited with {started.process.returncode}; see {started.log}"
            )
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(started.url + path, timeout=2.0, trust_env=False).status_code == 200:
                return
        time.sleep(0.3)
    raise StartError(f"{started.name} not ready after {timeout_s:.0f} s; see {started.log}")


def stop(started: Started) -> None:
    """Stop the process group ``started`` leads (only it: it was started in its own session)."""
    if started.process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(started.pid, signal.SIGTERM)
    try:
        started.process.wait(STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(started.pid, signal.SIGKILL)
        started.process.wait()


def start_fast_upstream(model: str, workdir: Path) -> Started:
    port = free_port()
    command = [sys.executable, "-m", "bench.fast_upstream", "--port", str(port), "--model", model]
    return start("fast-upstream", command, f"http://127.0.0.1:{port}", "/health", workdir)


def gateway_config(model: str, upstream: str, port: int) -> dict[str, Any]:
    """One tier named ``model`` on ``upstream``, policy ``single``, quiet logs."""
    return {
        "server": {"host": "127.0.0.1", "port": port, "log_level": "warning"},
        "tiers": {model: {"model": model, "endpoints": [upstream]}},
        "policies": {"default": "single"},
        # Every band runs single; the router still predicts difficulty, as in production.
        "router": {"bands": [{"name": "all", "policy": "single"}]},
    }


def start_gateway(model: str, upstream: str, workdir: Path) -> Started:
    port = free_port()
    config = workdir / "gateway.yaml"
    config.write_text(yaml.safe_dump(gateway_config(model, upstream, port)))
    command = [sys.executable, "-m", "ttc.cli", "serve", "--config", str(config)]
    return start("ttc-gateway", command, f"http://127.0.0.1:{port}", "/ready", workdir)


def litellm_config(model: str, upstream: str) -> dict[str, Any]:
    """LiteLLM's proxy config: ``model`` routed to the same upstream, OpenAI-compatible."""
    entry = {"model": f"openai/{model}", "api_base": upstream + "/v1", "api_key": "unused"}
    return {
        "model_list": [{"model_name": model, "litellm_params": entry}],
        "general_settings": {"master_key": LITELLM_KEY},
    }


def start_litellm(binary: Path, model: str, upstream: str, workdir: Path) -> Started:
    """LiteLLM's proxy, offline (local cost map), one worker, its defaults otherwise."""
    port = free_port()
    config = workdir / "litellm.yaml"
    config.write_text(yaml.safe_dump(litellm_config(model, upstream)))
    command = [str(binary), "--config", str(config), "--host", "127.0.0.1", "--port", str(port)]
    env = {"LITELLM_MASTER_KEY": LITELLM_KEY, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    url = f"http://127.0.0.1:{port}"
    return start("litellm", command, url, "/health/liveliness", workdir, env, timeout_s=300.0)
