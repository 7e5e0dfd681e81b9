"""The data plane's seam: one method that POSTs a JSON body and hands back the answer.

``WorkerClient`` (``workers.client``) speaks OpenAI over a ``Transport``, as httpx's clients
speak HTTP over a transport: ``AiohttpTransport`` is the real one (a shared
``aiohttp.ClientSession``, keep-alive on); a test passes a fake and needs no socket where a
socket is not the point (parsing, error translation). Tests of timeouts, resets and
connection reuse keep the real transport against ``FakeUpstream``.

Contract of ``post``: entering the context sends the request, with ``headers`` if given (a
``traceparent`` when tracing is on), and waits for the status line (a refused connection or a
timeout raises ``aiohttp.ClientError`` or ``TimeoutError``);
``Answer.headers`` are the answer's headers (a 429's ``Retry-After``), ``Answer.read`` returns
the whole body, ``Answer.chunks`` yields it as it arrives (raising the
same errors if the connection breaks). Leaving the context returns the connection to the pool
if the body was read to its end, and closes it otherwise, so vLLM sees the disconnect and
aborts the generation.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from types import TracebackType
from typing import Any, Protocol

import aiohttp
import orjson


class Answer(Protocol):
    @property
    def status(self) -> int: ...

    @property
    def headers(self) -> Mapping[str, str]: ...

    async def read(self) -> bytes: ...

    def chunks(self) -> AsyncIterator[bytes]: ...


class Exchange(Protocol):
    async def __aenter__(self) -> Answer: ...

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...


class Transport(Protocol):
    def post(
        self,
        url: str,
        body: dict[str, Any],
        timeout: aiohttp.ClientTimeout,
        headers: Mapping[str, str] | None = None,
    ) -> Exchange: ...


class _AiohttpAnswer:
    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response

    @property
    def status(self) -> int:
        return self._response.status

    @property
    def headers(self) -> Mapping[str, str]:
        return self._response.headers  # case-insensitive

    async def read(self) -> bytes:
        return await self._response.read()

    def chunks(self) -> AsyncIterator[bytes]:
        return self._response.content.iter_any()


_JSON = {"content-type": "application/json"}


def encoded(body: Mapping[str, Any]) -> bytes:
    """``body`` as JSON (UTF-8, compact). orjson encodes a MiB prompt in a tenth of a
    millisecond, where ``json.dumps`` holds the event loop (and the GIL) for three; a value
    orjson refuses (an integer past 64 bits) goes through ``json`` instead."""
    try:
        return orjson.dumps(body)
    except TypeError:  # orjson.JSONEncodeError
        return json.dumps(body, separators=(",", ":")).encode()


class _AiohttpExchange:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        url: str,
        body: dict[str, Any],
        timeout: aiohttp.ClientTimeout,
        headers: Mapping[str, str] | None,
    ) -> None:
        self._send = (session, url, body, timeout, headers)
        self._response: aiohttp.ClientResponse | None = None

    async def __aenter__(self) -> Answer:
        session, url, body, timeout, headers = self._send
        sent = {**_JSON, **headers} if headers else _JSON  # a traceparent (core.tracing)
        self._response = await session.post(url, data=encoded(body), headers=sent, timeout=timeout)
        return _AiohttpAnswer(self._response)

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        response = self._response
        if response is None:
            return
        if response.content.at_eof():
            response.release()  # read to its end: the connection goes back to the pool
        else:
            response.close()  # cancelled, closed early or broken: vLLM aborts the request


class AiohttpTransport:
    """The real transport: one ``aiohttp.ClientSession``, made on first use inside the running
    event loop (aiohttp requires it), at most ``max_connections`` connections in all."""

    # Below uvicorn's (so vLLM's) default 5 s keep-alive: we drop an idle connection before
    # the server does, so a request is never sent on a connection the server is just closing.
    KEEPALIVE_S = 4.0

    def __init__(self, max_connections: int) -> None:
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    def post(
        self,
        url: str,
        body: dict[str, Any],
        timeout: aiohttp.ClientTimeout,
        headers: Mapping[str, str] | None = None,
    ) -> Exchange:
        return _AiohttpExchange(self._open(), url, body, timeout, headers)

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=self._max_connections, keepalive_timeout=self.KEEPALIVE_S
            )
            self._session = aiohttp.ClientSession(connector=connector, trust_env=False)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
