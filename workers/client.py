"""OpenAI-compatible calls to one vLLM server, parsed into the policies' data types.

Errors are translated here: a refused connection or a 5xx *before any byte* is
``WorkerFailed`` (the pool retries it on another worker); a 4xx is the client's fault and
becomes ``InvalidRequest`` with vLLM's own message; anything after bytes were streamed is
``UpstreamError``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx

from policies.backend import Choice, Completion, Delta, TokenUsage
from policies.errors import InvalidRequest, TtcError, UpstreamError


class WorkerFailed(TtcError):
    """The worker could not take the request; safe to retry elsewhere (nothing was streamed)."""

    status = 503
    error_type = "service_unavailable"
    code = "worker_failed"


def parse_usage(raw: Mapping[str, Any] | None) -> TokenUsage:
    if not raw:
        return TokenUsage()
    return TokenUsage(int(raw.get("prompt_tokens") or 0), int(raw.get("completion_tokens") or 0))


def parse_choice(raw: Mapping[str, Any]) -> Choice:
    message = raw.get("message") or {}
    content = (raw.get("logprobs") or {}).get("content") or []
    return Choice(
        index=int(raw.get("index", 0)),
        text=message.get("content") or "",
        finish_reason=raw.get("finish_reason"),
        token_logprobs=tuple(float(t["logprob"]) for t in content),
        tokens=tuple(str(t.get("token", "")) for t in content),
        raw=raw,
    )


def parse_completion(raw: Mapping[str, Any]) -> Completion:
    choices = tuple(parse_choice(c) for c in raw.get("choices") or [])
    return Completion(choices=choices, usage=parse_usage(raw.get("usage")), model=raw["model"])


def parse_chunk(raw: Mapping[str, Any]) -> list[Delta]:
    deltas = [
        Delta(
            index=int(c.get("index", 0)),
            text=(c.get("delta") or {}).get("content") or "",
            finish_reason=c.get("finish_reason"),
            raw=c,
        )
        for c in raw.get("choices") or []
    ]
    if raw.get("usage"):
        deltas.append(Delta(usage=parse_usage(raw["usage"])))
    return deltas


def _upstream_message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:500]
    err = body.get("error") if isinstance(body, dict) else None
    if isinstance(err, dict):
        return str(err.get("message", err))
    return str(body.get("message", body)) if isinstance(body, dict) else str(body)


def raise_for_status(response: httpx.Response, message: str | None = None) -> None:
    if response.status_code < 400:
        return
    text = message if message is not None else _upstream_message(response)
    if response.status_code >= 500 or response.status_code == 429:
        raise WorkerFailed(f"worker answered {response.status_code}: {text}")
    if response.status_code in (400, 422):
        raise InvalidRequest(text, code="upstream_rejected")
    raise UpstreamError(f"worker answered {response.status_code}: {text}")


class WorkerClient:
    """Calls one worker's ``/v1/chat/completions``; shares the pool's ``httpx.AsyncClient``."""

    def __init__(self, http: httpx.AsyncClient, base_url: str, timeout: httpx.Timeout) -> None:
        self._http = http
        self._url = httpx.URL(base_url.rstrip("/") + "/v1/chat/completions")  # parsed once
        self._timeout = timeout

    async def chat(self, body: dict[str, Any], timeout: httpx.Timeout | None = None) -> Completion:
        try:
            response = await self._http.post(self._url, json=body, timeout=timeout or self._timeout)
        except httpx.TransportError as exc:
            raise WorkerFailed(f"worker unreachable: {type(exc).__name__}") from exc
        raise_for_status(response)
        try:
            return parse_completion(response.json())
        except (ValueError, KeyError, TypeError) as exc:
            raise UpstreamError("worker sent a malformed completion") from exc

    async def stream(
        self, body: dict[str, Any], timeout: httpx.Timeout | None = None
    ) -> AsyncIterator[Delta]:
        """Yield deltas; ``WorkerFailed`` can only come before the first one."""
        # A policy's own stream_options (continuous_usage_stats) are kept; usage is always on.
        options = {**(body.get("stream_options") or {}), "include_usage": True}
        body = {**body, "stream": True, "stream_options": options}
        request = self._http.build_request(
            "POST", self._url, json=body, timeout=timeout or self._timeout
        )
        try:
            response = await self._http.send(request, stream=True)
        except httpx.TransportError as exc:
            raise WorkerFailed(f"worker unreachable: {type(exc).__name__}") from exc
        try:
            if response.status_code >= 400:
                await response.aread()
                raise_for_status(response)
            async for delta in _iter_sse(response):
                yield delta
        finally:
            await response.aclose()


async def _iter_sse(response: httpx.Response) -> AsyncIterator[Delta]:
    try:
        async for line in response.aiter_lines():
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                return
            chunk = json.loads(data)
            if "error" in chunk and not chunk.get("choices"):
                raise UpstreamError(f"worker stream error: {_chunk_error(chunk)}")
            for delta in parse_chunk(chunk):
                yield delta
    except httpx.TransportError as exc:
        raise UpstreamError(f"worker stream broke: {type(exc).__name__}") from exc
    except ValueError as exc:
        raise UpstreamError("worker sent a malformed stream chunk") from exc
    raise UpstreamError("worker stream ended without [DONE]")


def _chunk_error(chunk: Mapping[str, Any]) -> str:
    err = chunk.get("error")
    return str(err.get("message", err)) if isinstance(err, dict) else str(err)
