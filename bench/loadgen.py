"""The overhead bench's load generator: a raw HTTP/1.1 keep-alive client on asyncio.

On a 2-core machine the client competes with the proxy it measures, so it is kept as cheap as
possible: pre-built request bytes, no HTTP library, one JSON parse per stream (to find the first
content token). Two load shapes, each sending ``requests`` requests: a closed loop of
``concurrency`` connections, each sending its next request when the last ends; and an open loop
at a fixed ``rate``, each request launched at its scheduled time whatever the others do, its
latency counted from that time (no coordinated omission).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Sample:
    """One request: latency and time to the first content token (streams), in seconds;
    ``failure`` says why a request that is not ``ok`` failed ("HTTP 500", "ConnectionError")."""

    latency_s: float
    ttft_s: float | None
    ok: bool
    failure: str | None = None


@dataclass
class Run:
    samples: list[Sample] = field(default_factory=list)
    wall_s: float = 0.0


class Target:
    """Where requests go: a base URL, extra headers, and the request bytes built once."""

    def __init__(self, base_url: str, body: Mapping[str, Any], headers: Mapping[str, str]) -> None:
        parts = urlsplit(base_url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.stream = bool(body.get("stream"))
        payload = json.dumps(body).encode()
        lines = [
            f"POST {parts.path.rstrip('/')}/v1/chat/completions HTTP/1.1",
            f"host: {self.host}:{self.port}",
            "content-type: application/json",
            f"content-length: {len(payload)}",
            *(f"{k}: {v}" for k, v in headers.items()),
        ]
        self.request = ("\r\n".join(lines) + "\r\n\r\n").encode() + payload


class Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, target: Target) -> Connection:
        reader, writer = await asyncio.open_connection(target.host, target.port, limit=1 << 20)
        return cls(reader, writer)

    def close(self) -> None:
        self.writer.close()

    async def send(self, target: Target, started: float) -> Sample:
        """Send one request and read the whole response; ``started`` is the latency origin."""
        self.writer.write(target.request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        headers = head.lower()
        ttft: float | None = None
        if b"transfer-encoding: chunked" in headers:
            ttft = await self._read_chunked(started)
        else:
            length = int(headers.split(b"content-length:")[1].split(b"\r\n")[0])
            await self.reader.readexactly(length)
        now = time.perf_counter()
        failure = None if status == 200 else f"HTTP {status}"
        return Sample(now - started, ttft if target.stream else None, status == 200, failure)

    async def _read_chunked(self, started: float) -> float | None:
        """Read a chunked body; the time its first non-empty content delta arrived, if any."""
        ttft: float | None = None
        pending = b""
        while True:
            size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
            data = await self.reader.readexactly(size + 2)
            if size == 0:
                return ttft
            if ttft is None:
                pending += data[:-2]
                events = pending.split(b"\n\n")
                pending = events.pop()
                if any(_has_content(e) for e in events):
                    ttft = time.perf_counter() - started


# A reset connection, a truncated body or a malformed head: that request failed.
_FAILURES = (
    OSError,
    asyncio.IncompleteReadError,
    asyncio.LimitOverrunError,
    ValueError,
    IndexError,
)


def _has_content(event: bytes) -> bool:
    if b'"content"' not in event or not event.startswith(b"data: {"):
        return False
    chunk = json.loads(event[6:])
    return any((c.get("delta") or {}).get("content") for c in chunk.get("choices") or [])


async def closed_loop(target: Target, concurrency: int, requests: int) -> Run:
    """``concurrency`` connections, each sending back to back until ``requests`` are sent."""
    run, remaining = Run(), [requests]

    async def worker() -> None:
        connection: Connection | None = None
        while remaining[0] > 0:
            remaining[0] -= 1
            connection = connection or await Connection.open(target)
            started = time.perf_counter()
            try:
                run.samples.append(await connection.send(target, started))
            except _FAILURES as exc:
                failed = Sample(time.perf_counter() - started, None, False, type(exc).__name__)
                run.samples.append(failed)
                connection.close()
                connection = None
        if connection is not None:
            connection.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    run.wall_s = time.perf_counter() - started
    return run


async def _checkout(idle: list[Connection], target: Target) -> tuple[Connection, bool]:
    """The most recently used idle connection the server has not closed, else a new one.

    Servers close keep-alive connections idle for a few seconds (uvicorn: 5 s); an open loop
    leaves some idle that long, and a request sent on one would fail for the client's sake.
    """
    while idle:
        connection = idle.pop()
        if not connection.reader.at_eof():
            return connection, True
        connection.close()
    return await Connection.open(target), False


async def open_loop(target: Target, rate: float, requests: int) -> Run:
    """``requests`` launched at ``rate`` per second, each on an idle connection or a new one."""
    run, idle = Run(), list[Connection]()

    async def one(scheduled: float) -> None:
        connection, reused = await _checkout(idle, target)
        try:
            try:
                sample = await connection.send(target, scheduled)
            except (ConnectionError, asyncio.IncompleteReadError):
                if not reused:
                    raise
                # The server closed the idle connection as we sent: retry once on a new one.
                connection.close()
                connection = await Connection.open(target)
                sample = await connection.send(target, scheduled)
            run.samples.append(sample)
        except _FAILURES as exc:
            failed = Sample(time.perf_counter() - scheduled, None, False, type(exc).__name__)
            run.samples.append(failed)
            connection.close()
            return
        idle.append(connection)

    origin = time.perf_counter()
    tasks = []
    for i in range(requests):
        scheduled = origin + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(scheduled)))
    await asyncio.gather(*tasks)
    run.wall_s = time.perf_counter() - origin
    for connection in idle:
        connection.close()
    return run
