"""A small fake OpenAI upstream on a real socket, for faults a real vLLM worker cannot produce
on demand: a slow first byte, an error status, a death mid-stream (connection reset), a hang,
and a worker that goes down and comes back when the test says so (``stop`` refuses connections
and resets open ones, as a killed process does; ``start`` listens again on the same port). A
real vLLM worker takes a minute to start on a CPU and two cannot run side by side here, so a
test of recovery timing (a second or two) needs a fake.

It speaks just enough HTTP/1.1 to serve ``/health``, ``/v1/models``, ``/metrics`` and
``/v1/chat/completions`` (streamed or not), with keep-alive as vLLM's uvicorn does: answers
carry a ``content-length``, streams are chunked, and ``connections`` counts the connections
accepted, so a test can see whether a client reuses them. ``FakeUpstream.mode`` picks how chat
calls (and ``health`` how ``/health``) behave; it can be changed while the server runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

MODEL = "fake"
TOKENS = 8  # tokens in a normal answer
USAGE = {"prompt_tokens": 5, "completion_tokens": TOKENS}
Request = tuple[str, str, dict[str, Any]]  # method, path, JSON body


def _response(status: int, body: bytes, content_type: str = "application/json") -> bytes:
    head = f"HTTP/1.1 {status} X\r\ncontent-type: {content_type}\r\ncontent-length: {len(body)}"
    return head.encode() + b"\r\n\r\n" + body


def _chunked(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def _sse(payload: dict[str, Any]) -> bytes:
    return _chunked(b"data: " + json.dumps(payload).encode() + b"\n\n")


def _chunk(text: str | None = None, finish: str | None = None) -> bytes:
    delta = {"role": "assistant", "content": ""} if text is None and not finish else {}
    if text is not None:
        delta = {"content": text}
    return _sse(
        {"model": MODEL, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    )


async def _read_request(reader: asyncio.StreamReader) -> Request | None:
    """The next request on a connection; None once the client has closed it between requests."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            return None
        raise
    lines = head.decode().split("\r\n")
    method, path, _ = lines[0].split(" ", 2)
    length = next(
        (
            int(v)
            for k, v in (ln.split(": ", 1) for ln in lines[1:] if ": " in ln)
            if k.lower() == "content-length"
        ),
        0,
    )
    return method, path, json.loads(await reader.readexactly(length)) if length else {}


@dataclass
class FakeUpstream:
    """``mode``: ok | slow (first byte after ``delay_s``) | die (reset after ``die_after``
    tokens) | stall (silent after ``die_after`` tokens) | hang (never answers) | an HTTP
    status such as ``503`` or ``400`` (with an OpenAI error body) | garbage (200, not JSON) |
    no_done (a stream without ``[DONE]``) | error_event (a stream carrying an error event).
    A stream continuing a final message (``continue_final_message``) that holds the first k
    tokens of the answer sends the rest.
    ``health``: ok | 503 | hang. Answers say ``text`` ``TOKENS`` times; ``on_chat`` runs as a
    chat call arrives."""

    mode: str = "ok"
    health: str = "ok"
    delay_s: float = 0.0
    die_after: int = 3
    token_delay_s: float = 0.01
    text: str = "x"
    on_chat: Callable[[], None] | None = None
    chats: int = 0
    finished: int = 0  # chat responses written completely (counted just before their end)
    aborted_by_client: int = 0
    died: int = 0
    continued: int = 0  # streams that continued a final message
    connections: int = 0
    url: str = ""
    _server: asyncio.Server | None = field(default=None, repr=False)
    _open: set[asyncio.StreamWriter] = field(default_factory=set, repr=False)

    async def start(self) -> FakeUpstream:
        """Listen: on a free port the first time, on the same port again after ``stop``."""
        port = int(self.url.rsplit(":", 1)[1]) if self.url else 0
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", port)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def stop(self) -> None:
        """Go down as a killed worker does: refuse new connections, reset the open ones."""
        if self._server is not None:
            self._server.close()
        for writer in list(self._open):
            writer.transport.abort()
        self._open.clear()
        await self.close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._open.add(writer)
        try:
            while (request := await _read_request(reader)) is not None:
                if not await self._route(*request, reader, writer):
                    break
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            self.aborted_by_client += 1
        finally:
            self._open.discard(writer)
            writer.close()

    async def _route(
        self,
        method: str,
        path: str,
        body: dict[str, Any],
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> bool:
        """Answer one request; False when the connection must end."""
        if path == "/health":
            if self.health == "hang":
                await asyncio.sleep(3600)
            writer.write(_response(200 if self.health == "ok" else 503, b""))
        elif path == "/v1/models":
            writer.write(_response(200, json.dumps({"data": [{"id": MODEL}]}).encode()))
        elif path == "/metrics":
            text = "vllm:num_requests_running 0\nvllm:num_requests_waiting 0\n"
            writer.write(_response(200, text.encode(), "text/plain"))
        elif method == "POST" and path == "/v1/chat/completions":
            self.chats += 1
            if self.on_chat is not None:
                self.on_chat()
            return await self._chat(body, reader, writer)
        else:
            writer.write(_response(404, b"{}"))
        return True

    async def _chat(
        self, body: dict[str, Any], reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        if self.mode == "hang":
            return await _until_client_leaves(self, reader)
        if self.mode.isdigit():
            error = json.dumps({"error": {"message": f"fake answered {self.mode}"}})
            writer.write(_response(int(self.mode), error.encode()))
            return True
        if self.mode == "slow":
            await asyncio.sleep(self.delay_s)
        if body.get("stream"):
            return await self._stream(reader, writer, self._continued(body))
        self.finished += 1  # before the last bytes: a client holding the answer sees the count
        if self.mode == "garbage":
            writer.write(_response(200, b"<html>not json</html>", "text/html"))
        else:
            message = {"role": "assistant", "content": self.text * TOKENS}
            answer = {
                "model": MODEL,
                "usage": USAGE,
                "choices": [{"index": 0, "finish_reason": "stop", "message": message}],
            }
            writer.write(_response(200, json.dumps(answer).encode()))
        return True

    def _continued(self, body: dict[str, Any]) -> int:
        """Tokens of the answer a continued final message already holds (vLLM's
        ``continue_final_message``): the stream goes on from there, as a model would."""
        messages = body.get("messages") or []
        if not body.get("continue_final_message") or not messages:
            return 0
        if messages[-1].get("role") != "assistant":
            return 0
        self.continued += 1
        return min(len(str(messages[-1].get("content") or "")) // len(self.text), TOKENS)

    async def _stream(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, skip: int = 0
    ) -> bool:
        """Write the stream (from token ``skip`` of the answer); False if this worker "died"
        or stalled on the way."""
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
            b"transfer-encoding: chunked\r\n\r\n" + _chunk()
        )
        for i in range(skip, TOKENS):
            if self.mode == "die" and i == self.die_after:
                writer.transport.abort()  # a reset, as when the worker's process is killed
                self.died += 1
                return False
            if self.mode == "stall" and i == self.die_after:
                return await _until_client_leaves(self, reader)
            writer.write(_chunk(self.text))
            await writer.drain()
            await asyncio.sleep(self.token_delay_s)
        if self.mode == "error_event":
            writer.write(_sse({"error": {"message": "engine overloaded", "code": 500}}))
        writer.write(_chunk(finish="stop"))
        usage = {**USAGE, "completion_tokens": TOKENS - skip}
        writer.write(_sse({"model": MODEL, "choices": [], "usage": usage}))
        if self.mode != "no_done":
            writer.write(_chunked(b"data: [DONE]\n\n"))
        await writer.drain()
        await asyncio.sleep(self.token_delay_s)  # the body's last chunk comes on its own, late
        self.finished += 1
        writer.write(b"0\r\n\r\n")
        return True


async def _until_client_leaves(upstream: FakeUpstream, reader: asyncio.StreamReader) -> bool:
    """Answer nothing more; return (False: close) once the client has closed the connection."""
    await reader.read()  # returns at EOF: the client gave up on us
    upstream.aborted_by_client += 1
    return False


def refusing_url() -> str:
    """A loopback port nobody listens on: a connection to it is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


async def eventually(check: Callable[[], bool], within_s: float = 2.0) -> bool:
    """Poll ``check``: a fake notices a closed connection a few event-loop ticks later."""
    deadline = asyncio.get_running_loop().time() + within_s
    while not check() and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.01)
    return check()
