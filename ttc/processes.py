"""``ttc serve --processes N``: N gateway processes on one port, one parent supervising them.

Each child binds its own listening socket with ``SO_REUSEPORT`` and runs its own uvicorn
server on it (``uvicorn.Server.serve(sockets=[...])``). The kernel then hashes each new
connection to one of the N sockets, so connections spread evenly; uvicorn's own ``workers``
share one socket instead, where whichever process wakes first takes the connection and a busy
process can take more than its share. Children are *spawned*, not forked, so none inherits a
half-built event loop, thread or connection pool from the parent.

State the processes must share (stored responses, limits, budgets, the cache, router stats)
lives in Redis as it does between replicas, so more than one process without ``redis.url`` is
refused at start. Process 0 alone launches and supervises the local workers; the others only
call their endpoints. ``/metrics`` on any process gathers every process's registry over a
private unix socket and merges them (``server.metrics.merge``). The parent forwards SIGHUP (a
config reload) and SIGTERM/SIGINT (a graceful stop) to every child; a child that dies stops
the others, and the parent exits non-zero.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import tempfile
from collections.abc import Callable, Sequence
from multiprocessing.process import BaseProcess
from pathlib import Path
from types import FrameType
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.openmetrics.exposition import generate_latest

from server.config import ConfigError, Settings, load_settings
from server.metrics.merge import merged_registry

log = logging.getLogger("ttc.processes")

PROCESS_HEADER = "x-ttc-process"  # which process answered: tests and debugging see the spread
# 2 s: a peer's registry renders in milliseconds; one that takes longer is stuck, and a scrape
# without it beats a scrape that times out.
PEER_TIMEOUT_S = 2.0
Setup = Callable[[Settings], None]


def count(settings: Settings) -> int:
    """``server.processes`` as a number (``auto``: the core count); more than one needs Redis."""
    wanted = settings.server.processes
    n = (os.cpu_count() or 1) if wanted == "auto" else wanted
    if n > 1 and settings.redis.url is None:
        raise ConfigError(
            f"server.processes: {n} processes need redis.url (stored responses, rate limits and"
            " the cache would otherwise split between them)"
        )
    return n


class Peers:
    """This process's registry on a unix socket, and the gathering of everyone's."""

    def __init__(self, folder: Path, index: int, total: int) -> None:
        self.folder, self.index, self.total = folder, index, total
        self.registry: CollectorRegistry | None = None

    def _path(self, index: int) -> str:
        return str(self.folder / f"metrics-{index}.sock")

    async def serve(self, registry: CollectorRegistry) -> asyncio.AbstractServer:
        self.registry = registry

        async def answer(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(generate_latest(registry))  # type: ignore[no-untyped-call]
            with contextlib.suppress(OSError):
                await writer.drain()
            writer.close()

        return await asyncio.start_unix_server(answer, self._path(self.index))

    async def _read(self, index: int) -> str | None:
        try:
            async with asyncio.timeout(PEER_TIMEOUT_S):
                reader, writer = await asyncio.open_unix_connection(self._path(index))
                data = await reader.read()
                writer.close()
                return data.decode()
        except (OSError, TimeoutError) as exc:
            log.warning("metrics of process %d unavailable: %r", index, exc)
            return None

    async def gather(self) -> CollectorRegistry:
        assert self.registry is not None, "serve() first"
        own = generate_latest(self.registry).decode()  # type: ignore[no-untyped-call]
        others = [i for i in range(self.total) if i != self.index]
        texts = await asyncio.gather(*(self._read(i) for i in others))
        return merged_registry([own, *(t for t in texts if t is not None)])


def _tag(app: Any, index: int) -> Any:
    """``app`` with ``x-ttc-process: <index>`` on every HTTP response."""
    value = str(index).encode()

    async def tagged(scope: Any, receive: Any, send: Any) -> None:
        async def tag(message: Any) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (PROCESS_HEADER.encode(), value)]
            await send(message)

        await app(scope, receive, tag if scope["type"] == "http" else send)

    return tagged


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)  # uvicorn's default backlog
    sock.setblocking(False)
    return sock


def child(
    config_path: Path, overrides: dict[str, Any], index: int, total: int, folder: str, setup: Setup
) -> None:
    """One gateway process (the target of a spawned child)."""
    import uvicorn

    from server.app import create_app

    os.setpgrp()  # a terminal's Ctrl-C reaches the parent alone, which stops the children once
    settings = load_settings(config_path)
    server = settings.server.model_copy(update=overrides)
    settings = settings.model_copy(update={"server": server})
    setup(settings)
    app = create_app(settings, config_path=config_path, supervise=index == 0)
    peers = Peers(Path(folder), index, total)
    app.state.gather_metrics = peers.gather
    config = uvicorn.Config(
        _tag(app, index),
        log_level=server.log_level,
        timeout_graceful_shutdown=30,
        access_log=False,
        lifespan="on",
    )

    async def main() -> None:
        unix = await peers.serve(app.state.ttc.metrics.registry)
        try:
            await uvicorn.Server(config).serve(sockets=[_listen(server.host, server.port)])
        finally:
            unix.close()

    asyncio.run(main())


def run(config_path: Path, overrides: dict[str, Any], total: int, setup: Setup) -> int:
    """Start ``total`` children, forward signals to them, wait; the exit code of the group."""
    folder = tempfile.mkdtemp(prefix="ttc-processes-")
    spawn = multiprocessing.get_context("spawn")
    children = [
        spawn.Process(
            target=child,
            args=(config_path, overrides, i, total, folder, setup),
            name=f"ttc-gateway-{i}",
        )
        for i in range(total)
    ]
    stopping = False

    def forward(signum: int, _: FrameType | None) -> None:
        nonlocal stopping
        stopping = stopping or signum != signal.SIGHUP
        sent = signal.SIGTERM if signum == signal.SIGINT else signum
        for c in children:
            if c.pid is not None and c.is_alive():
                os.kill(c.pid, sent)

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, forward)
    # Children inherit SIGHUP ignored (kept across exec), so one that arrives while a child
    # still starts does not kill it: the child reads the new file then anyway, and its
    # reloader takes SIGHUP over once it runs.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        for c in children:
            c.start()
        signal.signal(signal.SIGHUP, forward)
        return _wait(children, lambda: stopping, forward)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _wait(
    children: Sequence[BaseProcess],
    stopping: Callable[[], bool],
    forward: Callable[[int, FrameType | None], None],
) -> int:
    """Until every child has exited; one that dies unasked stops the others."""
    failed = False
    while any(c.is_alive() for c in children):
        for c in children:
            c.join(timeout=0.5)
            if not c.is_alive() and not stopping() and not failed:
                log.error("%s exited (%s): stopping the others", c.name, c.exitcode)
                failed = True
                forward(signal.SIGTERM, None)
    return 1 if failed or any(c.exitcode for c in children) else 0
