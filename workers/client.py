"""OpenAI-compatible calls to one vLLM server, parsed into the policies' data types.

The data plane: every chat call of a pool goes through one ``Transport``
(``workers.transport``; the real one is a shared ``aiohttp.ClientSession``, keep-alive on; a
test may pass a fake and need no socket). It is the hot path: a pool call measured about
0.25 ms of CPU (0.3 ms streamed) over aiohttp against 0.6 ms (1.2 ms) over an
``httpx.AsyncClient``. Health checks and ``/metrics`` scrapes, which are not hot, stay on httpx.

Errors are translated here: a refused connection, a timeout, a 5xx or a 429 *before any byte*
of output is ``WorkerFailed`` (the pool retries it on another worker); a 400/422 is the
client's fault and becomes ``InvalidRequest`` with vLLM's own message; another 4xx, a malformed
answer, or anything going wrong once a stream is under way is ``UpstreamError``.

Closing or cancelling a call closes its connection at once rather than returning it to the
pool, so vLLM sees the disconnect and aborts the generation.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from typing import Any

import aiohttp

from core.backend import Choice, Completion, Delta
from core.errors import InvalidRequest, UpstreamError, WorkerFailed
from core.usage import TokenUsage
from workers.transport import AiohttpTransport, Answer, Transport

_TRANSPORT_ERRORS = (aiohttp.ClientError, TimeoutError)
_MALFORMED = (ValueError, KeyError, TypeError, AttributeError)


def parse_usage(raw: Mapping[str, Any] | None) -> TokenUsage:
    if not raw:
        return TokenUsage()
    details = raw.get("completion_tokens_details") or {}
    return TokenUsage(
        int(raw.get("prompt_tokens") or 0),
        int(raw.get("completion_tokens") or 0),
        int(details.get("reasoning_tokens") or 0),
    )


def reasoning_of(message: Mapping[str, Any]) -> str:
    """vLLM's ``reasoning`` (or the deprecated ``reasoning_content`` of older servers)."""
    return str(message.get("reasoning") or message.get("reasoning_content") or "")


def parse_choice(raw: Mapping[str, Any]) -> Choice:
    if "message" not in raw and "text" in raw:
        return _text_choice(raw)
    message = raw.get("message") or {}
    content = (raw.get("logprobs") or {}).get("content") or []
    return Choice(
        index=int(raw.get("index", 0)),
        text=message.get("content") or "",
        finish_reason=raw.get("finish_reason"),
        reasoning=reasoning_of(message),
        token_logprobs=tuple(float(t["logprob"]) for t in content),
        tokens=tuple(str(t.get("token", "")) for t in content),
        raw=raw,
    )


def _text_choice(raw: Mapping[str, Any]) -> Choice:
    """A choice of ``/v1/completions``: ``text``, and logprobs as parallel lists."""
    logprobs = raw.get("logprobs") or {}
    pairs = [
        (t, lp)
        for t, lp in zip(
            logprobs.get("tokens") or [], logprobs.get("token_logprobs") or [], strict=False
        )
        if lp is not None
    ]
    return Choice(
        index=int(raw.get("index", 0)),
        text=raw.get("text") or "",
        finish_reason=raw.get("finish_reason"),
        token_logprobs=tuple(float(lp) for _, lp in pairs),
        tokens=tuple(str(t) for t, _ in pairs),
        raw=raw,
    )


def upstream_path(body: Mapping[str, Any]) -> str:
    """A body with a ``prompt`` is a text completion, anything else a chat completion."""
    return "/v1/completions" if "prompt" in body else "/v1/chat/completions"


def text_body(body: dict[str, Any]) -> dict[str, Any]:
    """A policy's body for ``/v1/completions``: there ``logprobs`` is the number of top
    log-probabilities (chat's ``logprobs: true`` + ``top_logprobs``)."""
    if "prompt" not in body or not isinstance(body.get("logprobs"), bool):
        return body
    out = dict(body)
    wanted, top = out.pop("logprobs"), out.pop("top_logprobs", None)
    if wanted:
        out["logprobs"] = int(top if top is not None else 1)
    return out


def parse_completion(raw: Mapping[str, Any]) -> Completion:
    choices = tuple(parse_choice(c) for c in raw.get("choices") or [])
    return Completion(choices=choices, usage=parse_usage(raw.get("usage")), model=raw["model"])


def parse_chunk(raw: Mapping[str, Any]) -> list[Delta]:
    deltas = [
        Delta(
            index=int(c.get("index", 0)),
            text=(c.get("delta") or {}).get("content") or c.get("text") or "",
            finish_reason=c.get("finish_reason"),
            reasoning=reasoning_of(c.get("delta") or {}),
            raw=c,
        )
        for c in raw.get("choices") or []
    ]
    if raw.get("usage"):
        deltas.append(Delta(usage=parse_usage(raw["usage"])))
    return deltas


def _upstream_message(body: bytes) -> str:
    try:
        parsed = json.loads(body)
    except ValueError:
        return body[:500].decode("utf-8", "replace")
    err = parsed.get("error") if isinstance(parsed, dict) else None
    if isinstance(err, dict):
        return str(err.get("message", err))
    return str(parsed.get("message", parsed)) if isinstance(parsed, dict) else str(parsed)


def raise_for_status(status: int, body: bytes) -> None:
    """Translate an error status (with its ``body``, for vLLM's message); pass anything else."""
    if status < 400:
        return
    text = _upstream_message(body)
    if status >= 500 or status == 429:
        raise WorkerFailed(f"worker answered {status}: {text}")
    if status in (400, 422):
        raise InvalidRequest(text, code="upstream_rejected")
    raise UpstreamError(f"worker answered {status}: {text}")


def attempt_timeout(read_s: float, connect_s: float) -> aiohttp.ClientTimeout:
    """The timeouts of one attempt.

    ``read_s`` bounds every wait for bytes: for a non-streamed call the whole answer (vLLM
    sends it at once), for a stream the silence between chunks. ``connect_s`` bounds opening a
    connection; waiting for a free one in a full pool is bounded by ``read_s``, so a saturated
    gateway is not mistaken for a dead worker. No total: the pool's deadline already shrinks
    ``read_s`` to what is left of the request's time.
    """
    return aiohttp.ClientTimeout(
        total=None, connect=read_s, sock_connect=connect_s, sock_read=read_s
    )


class WorkerClient:
    """Calls one worker's ``/v1/chat/completions`` (``/v1/completions`` for a body with a
    ``prompt``) over the pool's shared transport; ``headers`` (the pool's ``traceparent`` when
    tracing is on) go with the call."""

    def __init__(self, transport: Transport, base_url: str) -> None:
        self._transport = transport
        self._base = base_url.rstrip("/")

    async def chat(
        self,
        body: dict[str, Any],
        timeout: aiohttp.ClientTimeout,
        headers: Mapping[str, str] | None = None,
    ) -> Completion:
        url, body = self._base + upstream_path(body), text_body(body)
        try:
            async with self._transport.post(url, body, timeout, headers) as answer:
                status, raw = answer.status, await answer.read()
        except _TRANSPORT_ERRORS as exc:
            raise WorkerFailed(f"worker unreachable: {type(exc).__name__}") from exc
        raise_for_status(status, raw)
        try:
            return parse_completion(json.loads(raw))
        except _MALFORMED as exc:
            raise UpstreamError("worker sent a malformed completion") from exc

    async def stream(
        self,
        body: dict[str, Any],
        timeout: aiohttp.ClientTimeout,
        headers: Mapping[str, str] | None = None,
    ) -> AsyncIterator[Delta]:
        """Yield deltas; ``WorkerFailed`` can only come before the first one."""
        # A policy's own stream_options (continuous_usage_stats) are kept; usage is always on.
        options = {**(body.get("stream_options") or {}), "include_usage": True}
        body = {**text_body(body), "stream": True, "stream_options": options}
        exchange = self._transport.post(self._base + upstream_path(body), body, timeout, headers)
        try:
            answer = await exchange.__aenter__()
        except _TRANSPORT_ERRORS as exc:
            raise WorkerFailed(f"worker unreachable: {type(exc).__name__}") from exc
        try:
            if answer.status >= 400:
                raise_for_status(answer.status, await _error_body(answer))
            async with contextlib.aclosing(_iter_sse(answer.chunks())) as deltas:
                async for delta in deltas:
                    yield delta
        finally:
            await exchange.__aexit__(None, None, None)  # released if read to its end, or closed


async def _error_body(answer: Answer) -> bytes:
    """The body of an error answer, for its message; the status alone decides the error."""
    try:
        return await answer.read()
    except _TRANSPORT_ERRORS:
        return b""


async def _iter_sse(chunks: AsyncIterator[bytes]) -> AsyncGenerator[Delta, None]:
    """The deltas of an SSE body, which is read to its end after ``[DONE]``."""
    tail = b""
    try:
        async for data in chunks:
            lines = (tail + data).split(b"\n")
            tail = lines.pop()  # a line not yet complete
            for line in lines:
                deltas = _event(line)
                if deltas is None:
                    await _drain(chunks)
                    return
                for delta in deltas:
                    yield delta
    except _TRANSPORT_ERRORS as exc:
        raise UpstreamError(f"worker stream broke: {type(exc).__name__}") from exc
    except _MALFORMED as exc:
        raise UpstreamError("worker sent a malformed stream chunk") from exc
    raise UpstreamError("worker stream ended without [DONE]")


async def _drain(chunks: AsyncIterator[bytes]) -> None:
    """Read the body's end after ``[DONE]`` (the last chunk of a chunked body): a connection
    released before it is closed, and the next stream would open a new one. The answer is
    complete by then, so a failure here only costs the connection."""
    with contextlib.suppress(*_TRANSPORT_ERRORS):
        async for _ in chunks:
            pass


def _event(line: bytes) -> list[Delta] | None:
    """The deltas of one SSE line (none for a blank or non-data line); None for ``[DONE]``."""
    if not line.startswith(b"data:"):
        return []
    data = line[5:].strip()
    if data == b"[DONE]":
        return None
    chunk = json.loads(data)
    if "error" in chunk and not chunk.get("choices"):
        raise UpstreamError(f"worker stream error: {_chunk_error(chunk)}")
    return parse_chunk(chunk)


def _chunk_error(chunk: Mapping[str, Any]) -> str:
    err = chunk.get("error")
    return str(err.get("message", err)) if isinstance(err, dict) else str(err)


class WorkerClients:
    """One ``WorkerClient`` per worker URL, all over one ``Transport`` (by default an
    ``AiohttpTransport`` of at most ``max_connections`` connections), closed by ``close``."""

    def __init__(self, max_connections: int, transport: Transport | None = None) -> None:
        self._own: AiohttpTransport | None = None
        if transport is None:
            transport = self._own = AiohttpTransport(max_connections)
        self._transport = transport
        self._clients: dict[str, WorkerClient] = {}

    def get(self, base_url: str) -> WorkerClient:
        client = self._clients.get(base_url)
        if client is None:
            client = self._clients[base_url] = WorkerClient(self._transport, base_url)
        return client

    def forget(self, base_url: str) -> None:
        """Drop a worker that is gone (its idle connections expire on their own)."""
        self._clients.pop(base_url, None)

    async def close(self) -> None:
        """Close the transport this made (a transport passed in is its owner's to close)."""
        self._clients.clear()
        if self._own is not None:
            await self._own.close()
