"""A hosted OpenAI-compatible API, faked: the ``openai`` engine's upstream in tests.

Why a fake: a hosted API (OpenAI, or any provider of its chat API) cannot be reached from the
machines the tests run on, and the gateway's behaviour at its edges (a rate limit with
``Retry-After``, a key refused with the key quoted back, an endpoint it lacks) cannot be had
on demand from a real one anyway. It behaves as such an API does where the gateway relies on
it:

- every request needs ``Authorization: Bearer <key>``; any other is a 401 whose message quotes
  the key it was sent, as hosted APIs quote (fragments of) it;
- it serves ``GET /v1/models`` and ``POST /v1/chat/completions`` (streamed or not, ``n``
  choices, ``stream_options.include_usage``, ``max_completion_tokens``) and nothing else: no
  ``/health``, no ``/metrics``, no ``/v1/completions`` (404s);
- ``rate_limited`` calls are answered 429 with ``Retry-After: retry_after_s``.

``with_health`` adds ``/health`` and ``/metrics`` answering only with the key, as a vLLM
started with ``--api-key`` behind an authenticating proxy would. ``one_at_a_time`` makes it
refuse (409) a call that overlaps another, as a server with a single context cannot take two.
Run it alone with ``python -m tests.hosted_fake --port P --key-env VAR``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

MODEL = "hosted-model"
ANSWER = "The answer is 42."


def _words(text: str) -> list[str]:
    return [w + " " for w in text.split(" ")[:-1]] + text.split(" ")[-1:]


@dataclass
class HostedFake:
    key: str
    model: str = MODEL
    answer: str = ANSWER
    rate_limited: int = 0  # the next this many calls get a 429
    retry_after_s: int = 2
    with_health: bool = False
    one_at_a_time: bool = False
    token_delay_s: float = 0.0
    calls: dict[str, int] = field(default_factory=dict)  # path -> requests (any status)
    bodies: list[dict[str, Any]] = field(default_factory=list)  # chat bodies answered
    refused: int = 0  # requests answered 401
    overlapped: int = 0  # calls that arrived while another was running
    busy: int = 0
    url: str = ""
    _runner: web.AppRunner | None = None

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._count, self._auth])
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/v1/chat/completions", self._chat)
        if self.with_health:
            app.router.add_get("/health", _ok)
            app.router.add_get("/metrics", _metrics)
        return app

    async def start(self, port: int = 0) -> HostedFake:
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        bound = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{bound}"
        return self

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    @web.middleware
    async def _count(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.calls[request.path] = self.calls.get(request.path, 0) + 1
        response: web.StreamResponse = await handler(request)
        return response

    @web.middleware
    async def _auth(self, request: web.Request, handler: Any) -> web.StreamResponse:
        sent = request.headers.get("Authorization", "")
        if sent != f"Bearer {self.key}":
            self.refused += 1
            quoted = sent.removeprefix("Bearer ")
            message = f"Incorrect API key provided: {quoted}. Find your key in your account."
            return _error(401, message, "invalid_api_key")
        response: web.StreamResponse = await handler(request)
        return response

    async def _models(self, _: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": self.model}]})

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        if self.rate_limited > 0:
            self.rate_limited -= 1
            headers = {"Retry-After": str(self.retry_after_s)}
            return _error(429, "Rate limit reached for requests", "rate_limit_exceeded", headers)
        body = await request.json()
        if body.get("model") != self.model:
            return _error(404, f"The model '{body.get('model')}' does not exist", "model_not_found")
        if self.busy and self.one_at_a_time:
            self.overlapped += 1
            return _error(409, "busy: one request at a time", "busy")
        self.bodies.append(body)
        self.busy += 1
        try:
            if body.get("stream"):
                return await self._stream(request, body)
            await asyncio.sleep(self.token_delay_s * len(_words(self.answer)))
            return web.json_response(self._completion(body))
        finally:
            self.busy -= 1

    def _usage(self, body: dict[str, Any], n: int) -> dict[str, int]:
        prompt = sum(len(str(m.get("content", "")).split()) for m in body["messages"]) + 3
        completion = len(_words(self.answer)) * n
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }

    def _completion(self, body: dict[str, Any]) -> dict[str, Any]:
        n = int(body.get("n") or 1)
        message = {"role": "assistant", "content": self.answer}
        return {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": 0,
            "model": self.model,
            "choices": [
                {"index": i, "message": message, "finish_reason": "stop", "logprobs": None}
                for i in range(n)
            ],
            "usage": self._usage(body, n),
        }

    async def _stream(self, request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        n = int(body.get("n") or 1)
        for i in range(n):
            await _send(response, _chunk(self.model, i, {"role": "assistant", "content": ""}))
        for word in _words(self.answer):
            await asyncio.sleep(self.token_delay_s)
            for i in range(n):
                await _send(response, _chunk(self.model, i, {"content": word}))
        for i in range(n):
            await _send(response, _chunk(self.model, i, {}, "stop"))
        if (body.get("stream_options") or {}).get("include_usage"):
            usage = {**_chunk(self.model, 0, {}), "choices": [], "usage": self._usage(body, n)}
            await _send(response, usage)
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response


async def _ok(_: web.Request) -> web.Response:
    return web.Response()


async def _metrics(_: web.Request) -> web.Response:
    return web.Response(text="vllm:num_requests_running 0\nvllm:num_requests_waiting 0\n")


def _chunk(model: str, index: int, delta: dict[str, Any], finish: str | None = None) -> Any:
    choice = {"index": index, "delta": delta, "finish_reason": finish, "logprobs": None}
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": model,
        "choices": [choice],
    }


async def _send(response: web.StreamResponse, payload: Any) -> None:
    await response.write(b"data: " + json.dumps(payload).encode() + b"\n\n")


def _error(
    status: int, message: str, code: str, headers: dict[str, str] | None = None
) -> web.Response:
    body = {"error": {"message": message, "type": "invalid_request_error", "code": code}}
    return web.json_response(body, status=status, headers=headers)


async def _serve(port: int, key: str, model: str) -> None:
    fake = await HostedFake(key=key, model=model).start(port)
    try:
        await asyncio.Event().wait()
    finally:
        await fake.close()


def main() -> None:
    parser = argparse.ArgumentParser(description="a key-enforcing hosted-API fake")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--key-env", required=True, help="variable holding the key it expects")
    parser.add_argument("--model", default=MODEL)
    args = parser.parse_args()
    asyncio.run(_serve(args.port, os.environ[args.key_env], args.model))


if __name__ == "__main__":
    main()
