"""OpenAI-compatible calls to one worker of one tier, parsed into the policies' data types.

The data plane: every chat call of a pool goes through one ``Transport``
(``workers.transport``; the real one is a shared ``aiohttp.ClientSession``, keep-alive on; a
test may pass a fake and need no socket). It is the hot path: a pool call measured about
0.25 ms of CPU (0.3 ms streamed) over aiohttp against 0.6 ms (1.2 ms) over an
``httpx.AsyncClient``. Health checks and ``/metrics`` scrapes, which are not hot, stay on httpx.

Errors are translated here: a refused connection, a timeout or a 5xx *before any byte* of
output is ``WorkerFailed`` (the pool retries it on another worker); an error status is
translated by ``workers.statuses`` (400/422: the client's, with the upstream's message; 401/403:
the tier's credentials; 404/405/501: an endpoint the upstream lacks; 429: rate limited); a
malformed answer, or anything going wrong once a stream is under way, is ``UpstreamError``.

Closing or cancelling a call closes its connection at once rather than returning it to the
pool, so vLLM sees the disconnect and aborts the generation.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from core.backend import Completion, Delta
from core.errors import UpstreamError, WorkerFailed
from workers.credentials import TierCredentials
from workers.engines import ENGINES, Engine
from workers.engines.bodies import stream_body
from workers.parsing import (
    parse_choice,
    parse_chunk,
    parse_completion,
    parse_usage,
    reasoning_of,
)
from workers.statuses import Call, failure
from workers.transport import AiohttpTransport, Answer, Transport
from workers.urls import api_url

__all__ = [
    "TierLink",
    "WorkerClient",
    "WorkerClients",
    "attempt_timeout",
    "parse_choice",
    "parse_chunk",
    "parse_completion",
    "parse_usage",
    "raise_for_status",
    "reasoning_of",
    "text_body",
    "upstream_path",
]

_TRANSPORT_ERRORS = (aiohttp.ClientError, TimeoutError)
_MALFORMED = (ValueError, KeyError, TypeError, AttributeError)


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


def raise_for_status(status: int, body: bytes, call: Call | None = None) -> None:
    """Translate an error status (see ``workers.statuses``); pass anything else."""
    if status >= 400:
        raise failure(status, body, None, call or Call("", ""))


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
    """Calls one worker of one tier: ``/v1/chat/completions`` (``/v1/completions`` for a body
    with a ``prompt``) under the worker's API root (``workers.urls``), over the pool's shared
    transport, with the tier's credentials; ``headers`` (the pool's ``traceparent`` when
    tracing is on) go with the call. Bodies are already fit for the engine
    (``workers.engines.bodies.adapt``); a stream asks for usage where the engine can send it."""

    def __init__(
        self,
        transport: Transport,
        base_url: str,
        *,
        tier: str = "",
        engine: Engine = ENGINES["vllm"],
        credentials: TierCredentials | None = None,
    ) -> None:
        self._transport = transport
        self._base = base_url.rstrip("/")
        self._tier = tier
        self._engine = engine
        self._credentials = credentials

    def _headers(self, extra: Mapping[str, str] | None) -> Mapping[str, str] | None:
        if self._credentials is None:
            return extra
        return {**self._credentials.headers(), **(extra or {})}

    def _call(self, path: str) -> Call:
        redact = self._credentials.redact if self._credentials is not None else str
        return Call(self._tier, path, redact)

    async def chat(
        self,
        body: dict[str, Any],
        timeout: aiohttp.ClientTimeout,
        headers: Mapping[str, str] | None = None,
    ) -> Completion:
        path, body = upstream_path(body), text_body(body)
        exchange = self._transport.post(
            api_url(self._base, path), body, timeout, self._headers(headers)
        )
        try:
            async with exchange as answer:
                status, raw = answer.status, await answer.read()
                retry_after = answer.headers.get("Retry-After")
        except _TRANSPORT_ERRORS as exc:
            raise WorkerFailed(f"worker unreachable: {type(exc).__name__}") from exc
        if status >= 400:
            raise failure(status, raw, retry_after, self._call(path))
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
        path = upstream_path(body)
        body = stream_body(self._engine, text_body(body))
        url, sent = api_url(self._base, path), self._headers(headers)
        exchange = self._transport.post(url, body, timeout, sent)
        try:
            answer = await exchange.__aenter__()
        except _TRANSPORT_ERRORS as exc:
            raise WorkerFailed(f"worker unreachable: {type(exc).__name__}") from exc
        call = self._call(path)
        try:
            if answer.status >= 400:
                retry_after = answer.headers.get("Retry-After")
                raise failure(answer.status, await _error_body(answer), retry_after, call)
            async with contextlib.aclosing(_iter_sse(answer.chunks(), call)) as deltas:
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


async def _iter_sse(chunks: AsyncIterator[bytes], call: Call) -> AsyncGenerator[Delta, None]:
    """The deltas of an SSE body, which is read to its end after ``[DONE]``."""
    tail = b""
    try:
        async for data in chunks:
            lines = (tail + data).split(b"\n")
            tail = lines.pop()  # a line not yet complete
            for line in lines:
                deltas = _event(line, call)
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


def _event(line: bytes, call: Call) -> list[Delta] | None:
    """The deltas of one SSE line (none for a blank or non-data line); None for ``[DONE]``."""
    if not line.startswith(b"data:"):
        return []
    data = line[5:].strip()
    if data == b"[DONE]":
        return None
    chunk = json.loads(data)
    if "error" in chunk and not chunk.get("choices"):
        raise UpstreamError(f"worker stream error: {call.redact(_chunk_error(chunk))}")
    return parse_chunk(chunk)


def _chunk_error(chunk: Mapping[str, Any]) -> str:
    err = chunk.get("error")
    return str(err.get("message", err)) if isinstance(err, dict) else str(err)


@dataclass(frozen=True)
class TierLink:
    """How the calls of one tier go out: its engine and its credentials."""

    engine: Engine = ENGINES["vllm"]
    credentials: TierCredentials | None = None


class WorkerClients:
    """One ``WorkerClient`` per tier and worker URL (one URL may serve two tiers, each with its
    own key), all over one ``Transport`` (by default an ``AiohttpTransport`` of at most
    ``max_connections`` connections), closed by ``close``. ``tiers`` says how each tier's
    calls go out; a tier it does not name gets plain vLLM calls without credentials."""

    def __init__(
        self,
        max_connections: int,
        transport: Transport | None = None,
        tiers: Mapping[str, TierLink] | None = None,
    ) -> None:
        self._own: AiohttpTransport | None = None
        if transport is None:
            transport = self._own = AiohttpTransport(max_connections)
        self._transport = transport
        self._tiers = dict(tiers or {})
        self._clients: dict[tuple[str, str], WorkerClient] = {}

    def get(self, base_url: str, tier: str = "") -> WorkerClient:
        client = self._clients.get((tier, base_url))
        if client is None:
            link = self._tiers.get(tier, TierLink())
            client = WorkerClient(
                self._transport,
                base_url,
                tier=tier,
                engine=link.engine,
                credentials=link.credentials,
            )
            self._clients[(tier, base_url)] = client
        return client

    def forget(self, base_url: str) -> None:
        """Drop a worker that is gone (its idle connections expire on their own)."""
        for key in [k for k in self._clients if k[1] == base_url]:
            del self._clients[key]

    async def close(self) -> None:
        """Close the transport this made (a transport passed in is its owner's to close)."""
        self._clients.clear()
        if self._own is not None:
            await self._own.close()
