"""Session fixtures: one real vLLM CPU worker and one gateway, started once per test session.

The worker is started with ``ttc worker`` (SmolLM2-135M, served also as ``small`` and ``large``
so one worker can stand in for two tiers) with the ``smollm2`` profile's tool-call parser.
Set ``TTC_TEST_WORKER_URL`` to reuse a worker that is already running (development); CI starts
its own. Gateways run as ``ttc serve`` subprocesses with a generated config; ``start_gateway``
starts extra ones with other settings.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml

from workers.lifeline import popen  # children die with the test run, also a killed one

MODEL = "smollm2-135m"
WORKER_STARTUP_S = 900.0
GATEWAY_STARTUP_S = 60.0

GatewayFactory = Callable[..., str]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_http(url: str, timeout_s: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process for {url} exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=2.0, trust_env=False).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1.0)
    raise TimeoutError(f"{url} not ready after {timeout_s:.0f}s")


def stop(proc: subprocess.Popen[bytes], grace_s: float = 30.0) -> None:
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def ttc_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "ttc.cli", *args]


# --- the session worker's key (issue 25) ---------------------------------------------------
# The session's vLLM worker requires an API key (vLLM reads VLLM_API_KEY), as any worker others
# can reach should; tiers on it send the key from WORKER_KEY_ENV, which gateways started by the
# tests inherit. A worker reused through TTC_TEST_WORKER_URL may run without a key: vLLM then
# ignores the header.
WORKER_KEY_ENV = "TTC_TEST_WORKER_KEY"


def worker_key() -> str:
    """The session worker's key (from the environment when set, so a reused worker can be
    keyed too)."""
    return os.environ.setdefault(WORKER_KEY_ENV, "ttc-test-worker-key-7c4e1a9b")


def start_worker(port: int, log: Path) -> subprocess.Popen[bytes]:
    cmd = ttc_cmd(
        "worker",
        "--model",
        MODEL,
        "--port",
        str(port),
        "--served-name",
        "small",
        "--served-name",
        "large",
        "--profile",
        "smollm2",  # its tool-call parser: one session worker serves the tool tests too
    )
    env = {**os.environ, "VLLM_API_KEY": worker_key()}
    with log.open("wb") as out:
        return popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env=env)


WorkerStarter = Callable[[int, Path], subprocess.Popen[bytes]]


def session_worker(reuse_env: str, start: WorkerStarter, folder: Path) -> Iterator[str]:
    """A worker for the session: the URL in ``reuse_env`` if set, else one started (and
    stopped at the end) with ``start``; a worker that fails to start shows its log's tail."""
    reuse = os.environ.get(reuse_env)
    if reuse:
        yield reuse.rstrip("/")
        return
    port = free_port()
    log = folder / "worker.log"
    proc = start(port, log)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url + "/health", WORKER_STARTUP_S, proc)
    except (RuntimeError, TimeoutError):
        stop(proc)
        sys.stderr.write(log.read_text()[-4000:])
        raise
    yield url
    stop(proc)


@pytest.fixture(scope="session")
def worker_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("worker")
    yield from session_worker("TTC_TEST_WORKER_URL", start_worker, folder)


def gateway_config(worker: str, **sections: Any) -> dict[str, Any]:
    keyed = {"endpoints": [worker], "api_key_env": WORKER_KEY_ENV}
    worker_key()  # set for the gateways the test starts
    config: dict[str, Any] = {
        "tiers": {
            MODEL: {"model": MODEL, **keyed},
            "small": {"model": "small", **keyed},
            "large": {"model": "large", **keyed},
        },
        "server": {"stream_keepalive_s": 1.0, "max_body_bytes": 65536},
        "pool": {"health_interval_s": 0.5, "retry_after_s": 3},
    }
    for key, value in sections.items():
        config[key] = {**config.get(key, {}), **value}
    return config


@pytest.fixture(scope="session")
def start_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayFactory]:
    """Start a ``ttc serve`` subprocess for a config dict; returns its base URL."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(config: dict[str, Any], *, wait_ready: bool = True) -> str:
        folder = tmp_path_factory.mktemp("gateway")
        path = folder / "config.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        port = free_port()
        with (folder / "gateway.log").open("wb") as out:
            proc = popen(
                ttc_cmd("serve", "--config", str(path), "--port", str(port)),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        procs.append(proc)
        url = f"http://127.0.0.1:{port}"
        wait_http(url + ("/ready" if wait_ready else "/health"), GATEWAY_STARTUP_S, proc)
        return url

    yield start
    for proc in procs:
        stop(proc)


@pytest.fixture(scope="session")
def gateway(worker_url: str, start_gateway: GatewayFactory) -> str:
    return start_gateway(gateway_config(worker_url))


@pytest.fixture(scope="session")
def client(gateway: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(
        base_url=gateway + "/v1", api_key="unused", max_retries=0, timeout=300
    ) as sdk:
        yield sdk


# --- Redis for state/ tests (issue 6) ------------------------------------------------------
# A private redis-server per session on a free port, never the machine's shared one on 6379,
# so tests may pause, kill and restart it. No persistence: a restart starts empty.


class RedisServer:
    """A ``redis-server`` subprocess the tests own: ``stop()`` kills it, ``start()`` revives it
    on the same port."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        cmd = [
            "redis-server",
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.folder),
        ]
        with (self.folder / "redis.log").open("ab") as out:
            self.proc = popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline:
            if self.cli("PING") == "PONG":
                return
            time.sleep(0.05)
        raise TimeoutError(f"redis-server on port {self.port} did not start")

    def cli(self, *args: str) -> str:
        """One redis-cli command (empty string if the server does not answer)."""
        done = subprocess.run(
            ["redis-cli", "-p", str(self.port), *args], capture_output=True, text=True, timeout=10
        )
        return done.stdout.strip() if done.returncode == 0 else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_url(redis_server: RedisServer) -> str:
    return redis_server.url


# --- a reasoning worker (issue 13) ---------------------------------------------------------
# The thinking variant of the bundled model under vLLM's deepseek_r1 reasoning parser, started
# only when a reasoning test runs (it costs a second worker's memory and ~3 minutes of warm-up);
# TTC_TEST_REASONING_WORKER_URL reuses one already running.
REASONING_MODEL = "smollm2-135m-thinking"


def start_reasoning_worker(port: int, log: Path) -> subprocess.Popen[bytes]:
    cmd = ttc_cmd(
        "worker",
        "--model",
        REASONING_MODEL,
        "--port",
        str(port),
        "--served-name",
        "thinking",
        "--profile",
        "smollm2_thinking",
    )
    with log.open("wb") as out:
        return popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


@pytest.fixture(scope="session")
def reasoning_worker_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("reasoning-worker")
    yield from session_worker("TTC_TEST_REASONING_WORKER_URL", start_reasoning_worker, folder)
