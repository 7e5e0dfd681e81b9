"""A small fake OpenAI upstream on a real socket, for faults a real vLLM worker cannot produce
on demand: a slow first byte, a 503, a death mid-stream (connection reset), a hang.

It speaks just enough HTTP/1.1 (one request per connection, ``Connection: close``) to serve
``/health``, ``/v1/models``, ``/metrics`` and ``/v1/chat/completions`` (streamed or not).
``FakeUpstream.mode`` picks how chat calls (and ``health`` how ``/health``) behave; it can be
changed while the server runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass, field
from typing import Any

MODEL = "fake"
TOKENS = 8  # tokens in a normal answer


def _response(status: int, body: bytes, content_type: str = "application/json") -> bytes:
    head = (f"HTTP/1.1 {status} X\r\ncontent-type: {content_type}\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n")  # fmt: skip
    return head.encode() + body


def _sse(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


def _chunk(text: str | None = None, finish: str | None = None) -> bytes:
    delta = {"role": "assistant", "content": ""} if text is None and not finish else {}
    if text is not None:
        delta = {"content": text}
    return _sse({"model": MODEL, "choices": [{"index": 0, "delta": delta,
                                              "finish_reason": finish}]})  # fmt: skip


@dataclass
class FakeUpstream:
    """``mode``: ok | 503 | slow (first byte after ``delay_s``) | die (reset after ``die_after``
    tokens) | hang (never answers). ``health``: ok | 503 | hang."""

    mode: str = "ok"
    health: str = "ok"
    delay_s: float = 0.0
    die_after: int = 3
    token_delay_s: float = 0.01
    chats: int = 0
    finished: int = 0  # chat responses written completely
    aborted_by_client: int = 0
    died: int = 0
    url: str = ""
    _server: asyncio.Server | None = field(default=None, repr=False)

    async def start(self) -> FakeUpstream:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode().split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            length = next((int(v) for k, v in (ln.split(": ", 1) for ln in lines[1:] if ": " in ln)
                           if k.lower() == "content-length"), 0)  # fmt: skip
            body = json.loads(await reader.readexactly(length)) if length else {}
            await self._route(method, path, body, reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            self.aborted_by_client += 1
        finally:
            writer.close()

    async def _route(
        self,
        method: str,
        path: str,
        body: dict[str, Any],
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
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
            await self._chat(body, reader, writer)
        else:
            writer.write(_response(404, b"{}"))
        await writer.drain()

    async def _chat(self, body: dict[str, Any], reader: asyncio.StreamReader,
                    writer: asyncio.StreamWriter) -> None:  # fmt: skip
        if self.mode == "hang":
            await reader.read()  # returns at EOF: the client gave up on us
            self.aborted_by_client += 1
            return
        if self.mode == "503":
            writer.write(_response(503, b'{"error": {"message": "overloaded"}}'))
            return
        if self.mode == "slow":
            await asyncio.sleep(self.delay_s)
        if body.get("stream"):
            if not await self._stream(writer):
                return
        else:
            answer = {"model": MODEL, "usage": {"prompt_tokens": 5, "completion_tokens": TOKENS},
                      "choices": [{"index": 0, "finish_reason": "stop",
                                   "message": {"role": "assistant", "content": "x" * TOKENS}}]}
            writer.write(_response(200, json.dumps(answer).encode()))  # fmt: skip
        self.finished += 1

    async def _stream(self, writer: asyncio.StreamWriter) -> bool:
        """Write the stream; False if this worker "died" on the way."""
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                     b"connection: close\r\n\r\n" + _chunk())  # fmt: skip
        for i in range(TOKENS):
            if self.mode == "die" and i == self.die_after:
                writer.transport.abort()  # a reset, as when the worker's process is killed
                self.died += 1
                return False
            writer.write(_chunk("x"))
            await writer.drain()
            await asyncio.sleep(self.token_delay_s)
        writer.write(_chunk(finish="stop"))
        writer.write(_sse({"model": MODEL, "choices": [],
                           "usage": {"prompt_tokens": 5, "completion_tokens": TOKENS}}))
        writer.write(b"data: [DONE]\n\n")  # fmt: skip
        return True
