"""A minimal, fast OpenAI-compatible upstream: isolates the gateway's own cost in benchmarks.

It answers ``POST /v1/chat/completions`` (and ``POST /v1/completions``, the same reply as
``text``) at once with a fixed completion (``n`` choices, token log-probabilities when asked),
or as a short SSE stream, one event per token; ``GET /health``
and ``GET /v1/models`` as vLLM does. It is a raw ``asyncio.Protocol`` on HTTP/1.1 keep-alive (no
framework), so one request costs tens of microseconds and the bench measures the proxy, not
this. Not a vLLM simulator: no batching, no queueing, no sampling.

    python -m bench.fast_upstream --port 8900 --model fast
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import time
from typing import Any, cast

REPLY_TOKENS = ("The", " capital", " of", " France", " is", " Paris", ".")
# 20 tokens: about what the bench's one-line prompt costs with a chat template.
PROMPT_TOKENS = 20
_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 411: "Length Required"}


def completion(body: dict[str, Any]) -> dict[str, Any]:
    """The non-streamed response to a chat request ``body``."""
    n = int(body.get("n") or 1)
    logprobs = None
    if body.get("logprobs"):
        logprobs = {
            "content": [{"token": t, "logprob": -0.05, "top_logprobs": []} for t in REPLY_TOKENS]
        }
    choice = {
        "message": {"role": "assistant", "content": "".join(REPLY_TOKENS)},
        "logprobs": logprobs,
        "finish_reason": "stop",
    }
    return {
        "id": "chatcmpl-fast",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model", "fast"),
        "choices": [{"index": i, **choice} for i in range(n)],
        "usage": _usage(n),
    }


def _usage(n: int) -> dict[str, int]:
    completion_tokens = n * len(REPLY_TOKENS)
    return {
        "prompt_tokens": PROMPT_TOKENS,
        "completion_tokens": completion_tokens,
        "total_tokens": PROMPT_TOKENS + completion_tokens,
    }


def text_completion(body: dict[str, Any]) -> dict[str, Any]:
    """The non-streamed response to a text-completion request ``body``."""
    logprobs = None
    if body.get("logprobs") is not None:
        logprobs = {"tokens": list(REPLY_TOKENS), "token_logprobs": [-0.05] * len(REPLY_TOKENS)}
    choice = {"text": "".join(REPLY_TOKENS), "logprobs": logprobs, "finish_reason": "stop"}
    chat = completion({**body, "logprobs": None})
    choices = [{"index": c["index"], **choice} for c in chat["choices"]]
    return {**chat, "id": "cmpl-fast", "object": "text_completion", "choices": choices}


def text_stream_events(body: dict[str, Any]) -> list[bytes]:
    """The SSE events of a streamed text completion: one per token, finish, usage, [DONE]."""
    base = {
        "id": "cmpl-fast",
        "object": "text_completion",
        "created": int(time.time()),
        "model": body.get("model", "fast"),
    }

    def event(text: str, finish: str | None = None) -> bytes:
        choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish}
        return b"data: " + json.dumps({**base, "choices": [choice]}).encode() + b"\n\n"

    events = [event(token) for token in REPLY_TOKENS] + [event("", "stop")]
    if (body.get("stream_options") or {}).get("include_usage"):
        usage = {**base, "choices": [], "usage": _usage(1)}
        events.append(b"data: " + json.dumps(usage).encode() + b"\n\n")
    events.append(b"data: [DONE]\n\n")
    return events


def stream_events(body: dict[str, Any]) -> list[bytes]:
    """The SSE events of a streamed response: role, one per token, finish, usage, ``[DONE]``."""
    base = {
        "id": "chatcmpl-fast",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": body.get("model", "fast"),
    }

    def event(delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return b"data: " + json.dumps({**base, "choices": [choice]}).encode() + b"\n\n"

    events = [event({"role": "assistant", "content": ""})]
    events += [event({"content": token}) for token in REPLY_TOKENS]
    events.append(event({}, "stop"))
    if (body.get("stream_options") or {}).get("include_usage"):
        usage = {**base, "choices": [], "usage": _usage(1)}
        events.append(b"data: " + json.dumps(usage).encode() + b"\n\n")
    events.append(b"data: [DONE]\n\n")
    return events


class UpstreamProtocol(asyncio.Protocol):
    """One client connection: parses pipelined HTTP/1.1 requests and answers each at once."""

    def __init__(self, models: tuple[str, ...]) -> None:
        self._models = models
        self._buffer = b""
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while (request := self._next_request()) is not None:
            method, path, headers, body = request
            self._respond(method, path, headers, body)

    def _next_request(self) -> tuple[str, str, dict[str, str], bytes] | None:
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            return None
        lines = self._buffer[:end].decode("latin-1").split("\r\n")
        method, path, _ = lines[0].split(" ", 2)
        headers = {
            k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])
        }
        length = int(headers.get("content-length", "0"))
        if len(self._buffer) < end + 4 + length:
            return None
        body = self._buffer[end + 4 : end + 4 + length]
        self._buffer = self._buffer[end + 4 + length :]
        return method, path.split("?", 1)[0], headers, body

    def _respond(self, method: str, path: str, headers: dict[str, str], body: bytes) -> None:
        if "chunked" in headers.get("transfer-encoding", ""):
            self._send(411, {"error": {"message": "send Content-Length"}})
        elif method == "GET" and path == "/health":
            self._send(200, {})
        elif method == "GET" and path == "/v1/models":
            data = [{"id": m, "object": "model", "owned_by": "bench"} for m in self._models]
            self._send(200, {"object": "list", "data": data})
        elif method == "POST" and path == "/v1/chat/completions":
            request = json.loads(body or b"{}")
            if request.get("stream"):
                self._send_stream(stream_events(request))
            else:
                self._send(200, completion(request))
        elif method == "POST" and path == "/v1/completions":
            request = json.loads(body or b"{}")
            if request.get("stream"):
                self._send_stream(text_stream_events(request))
            else:
                self._send(200, text_completion(request))
        else:
            self._send(404, {"error": {"message": f"no route {method} {path}"}})

    def _send(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        head = (
            f"HTTP/1.1 {status} {_REASONS[status]}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(data)}\r\n\r\n"
        )
        self._write(head.encode() + data)

    def _send_stream(self, events: list[bytes]) -> None:
        head = (
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
            b"transfer-encoding: chunked\r\n\r\n"
        )
        chunks = b"".join(b"%x\r\n%s\r\n" % (len(e), e) for e in events)
        self._write(head + chunks + b"0\r\n\r\n")

    def _write(self, data: bytes) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(data)


async def serve(host: str, port: int, models: tuple[str, ...]) -> None:
    """Serve until cancelled."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: UpstreamProtocol(models), host, port, backlog=2048)
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8900)
    parser.add_argument("--model", action="append", help="served model name (repeatable)")
    args = parser.parse_args(argv)
    models = tuple(args.model or ["fast"])
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:  # plain asyncio is only slower
        runner = asyncio.run
    with contextlib.suppress(KeyboardInterrupt):
        runner(serve(args.host, args.port, models))


if __name__ == "__main__":
    main()
