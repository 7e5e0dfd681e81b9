"""Start local vLLM workers: ``ttc worker`` in the foreground, ``WorkerSupervisor`` under serve.

The command is ``vllm serve`` (run as ``workers.vllm_cli``: the CPU build's ``vllm`` console
script cannot find its own metadata), with prefix caching on so the samples and probes of one
request reuse the prompt's KV cache, and the parser flags of the tier's model profile
(``workers.profiles.worker_args``: tool-call and reasoning parsers). The same command serves
the GPU build. Every worker started here gets a parent-death signal (``workers.lifeline``): it
stops when whatever started it dies, SIGKILL included.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from pathlib import Path

import httpx

from core.profile import PLAIN, ModelProfile
from workers.config import LaunchConfig
from workers.lifeline import die_with_parent, popen
from workers.models import BUNDLED, prepare
from workers.profiles import worker_args

log = logging.getLogger("ttc.worker")


def resolve_model(model: str) -> tuple[Path, str]:
    """Return (folder, default served name) for a bundled model name or a model folder."""
    if model in BUNDLED:
        return prepare(model), model
    path = Path(model).expanduser()
    return path, path.name


def vllm_command(
    launch: LaunchConfig, folder: Path, served: tuple[str, ...], profile: ModelProfile = PLAIN
) -> list[str]:
    return [
        sys.executable,
        "-m",
        "workers.vllm_cli",
        "serve",
        str(folder),
        "--served-model-name",
        *served,
        "--host",
        launch.host,
        "--port",
        str(launch.port),
        "--max-model-len",
        str(launch.max_model_len),
        "--enable-prefix-caching",
        "--disable-uvicorn-access-log",
        *worker_args(profile),
        *launch.extra_args,
    ]


def worker_env(launch: LaunchConfig) -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("VLLM_CPU_KVCACHE_SPACE", str(launch.kv_cache_gib))
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    return env


def build(launch: LaunchConfig, profile: ModelProfile = PLAIN) -> tuple[list[str], dict[str, str]]:
    folder, default_name = resolve_model(launch.model)
    served = tuple(dict.fromkeys((default_name, *launch.served_names)))
    return vllm_command(launch, folder, served, profile), worker_env(launch)


def is_healthy(url: str, timeout: float = 2.0) -> bool:
    try:
        return httpx.get(url + "/health", timeout=timeout, trust_env=False).status_code == 200
    except httpx.HTTPError:
        return False


def run_foreground(launch: LaunchConfig, profile: ModelProfile = PLAIN) -> int:
    """``ttc worker``: run vLLM, report readiness, forward SIGINT/SIGTERM, return its exit code."""
    cmd, env = build(launch, profile)
    proc = popen(cmd, env=env)

    def forward(signum: int, _frame: object) -> None:
        proc.send_signal(signum)

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, forward)
    deadline = time.monotonic() + launch.startup_timeout_s
    while proc.poll() is None and time.monotonic() < deadline:
        if is_healthy(launch.url):
            log.warning("worker ready at %s", launch.url)
            break
        time.sleep(1.0)
    else:
        if proc.poll() is None:
            log.error("worker not ready after %.0fs; stopping it", launch.startup_timeout_s)
            proc.terminate()
    return proc.wait()


class WorkerSupervisor:
    """Keeps one local vLLM worker running for the gateway; restarts it with backoff. The
    worker carries ``profile``'s parser flags (the tier's model profile)."""

    def __init__(self, launch: LaunchConfig, profile: ModelProfile = PLAIN) -> None:
        self.launch = launch
        self.profile = profile
        self.restarts = 0
        self._proc: asyncio.subprocess.Process | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    async def start(self) -> None:
        if await asyncio.to_thread(is_healthy, self.launch.url):
            log.warning("a worker already answers at %s; not launching another", self.launch.url)
            return
        cmd, env = await asyncio.to_thread(build, self.launch, self.profile)
        self._task = asyncio.create_task(self._supervise(cmd, env), name="worker-supervisor")

    async def _supervise(self, cmd: list[str], env: dict[str, str]) -> None:
        backoff = 1.0
        while not self._stopping:
            started = time.monotonic()
            self._proc = await asyncio.create_subprocess_exec(
                *cmd,
                env=env,
                start_new_session=True,  # stopped as a group: vLLM's engine processes too
                preexec_fn=die_with_parent(),  # the loop's thread: serve's main thread
            )
            code = await self._proc.wait()
            if self._stopping or not self.launch.restart:
                return
            log.error("worker on port %d exited with %s; restarting", self.launch.port, code)
            self.restarts += 1
            backoff = 1.0 if time.monotonic() - started > 60 else min(backoff * 2, 30.0)
            await asyncio.sleep(backoff)

    async def stop(self, grace_s: float = 20.0) -> None:
        self._stopping = True
        proc = self._proc
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), grace_s)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                await proc.wait()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
