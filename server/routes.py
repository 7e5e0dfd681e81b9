"""HTTP routes only: parse, hand to ``ChatService``, render. No orchestration here."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any, TypeVar

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import ValidationError

from policies.base import Decision, GenRequest, PolicyResult
from policies.errors import InvalidRequest, PayloadTooLarge, TtcError
from policies.metering import MeteredBackend
from server.auth import Caller
from server.errors import from_validation_error
from server.openai_schema import ChatCompletionRequest
from server.responses import ChunkFactory, completion_body
from server.service import ChatService
from server.state import AppState
from server.streaming import Event, sse_body
from state.cache import split_cache_flag

router = APIRouter()
T = TypeVar("T")


def state_of(request: Request) -> AppState:
    state: AppState = request.app.state.ttc
    return state


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"request body of {declared} bytes exceeds the {limit}-byte limit")
    body = bytearray()
    async for part in request.stream():
        body += part
        if len(body) > limit:
            raise PayloadTooLarge(f"request body exceeds the {limit}-byte limit")
    return bytes(body)


def parse_chat(raw: bytes) -> ChatCompletionRequest:
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidRequest(
            "We could not parse the JSON body of your request.", code="invalid_json"
        ) from exc
    if not isinstance(data, dict):
        raise InvalidRequest("the request body must be a JSON object", code="invalid_json")
    try:
        return ChatCompletionRequest.model_validate(data)
    except ValidationError as exc:
        raise from_validation_error(exc) from exc


def gen_request(chat: ChatCompletionRequest, timeout_s: float) -> GenRequest:
    return GenRequest(
        messages=chat.wire_messages(),
        sampling=chat.sampling(),
        passthrough=chat.passthrough(),
        model=chat.model,
        reasoning_effort=chat.reasoning_effort,
        ttc=chat.ttc or {},
        request_id=f"chatcmpl-{uuid.uuid4().hex}",
        deadline=time.monotonic() + timeout_s,
    )


async def until_disconnect(request: Request, work: Awaitable[T]) -> T:
    """Await ``work``; if the client goes away first, cancel it (and its upstream calls).

    One watcher task per request, cancelling this handler's task on ``http.disconnect``.
    """
    handler = asyncio.current_task()

    async def watch() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass
        if handler is not None:
            handler.cancel()

    watcher = asyncio.ensure_future(watch())
    try:
        return await work
    finally:
        watcher.cancel()


def ttc_headers(plan: Decision) -> dict[str, str]:
    return {"x-ttc-tier": plan.tier, "x-ttc-policy": plan.policy.name}


@router.post("/v1/chat/completions", response_model=None)
async def chat_completions(request: Request) -> Response:
    app = state_of(request)
    app.metrics.in_flight.inc()
    meter: MeteredBackend | None = None
    try:
        caller = await app.guard.authenticate(request)
        raw = await read_body(request, app.settings.server.max_body_bytes)
        chat = parse_chat(raw)
        ttc, cache_flag = split_cache_flag(chat.ttc)
        req = replace(gen_request(chat, app.settings.server.request_timeout_s), ttc=ttc)
        await app.guard.admit(caller)  # before planning: a refused request never probes a model
        meter = app.service.meter()
        plan, policy = await app.service.plan(req, meter)
        app.guard.authorize(caller, plan)  # a refused plan is still billed its probe
    except TtcError as exc:
        app.metrics.in_flight.dec()
        app.service.failed(None, exc)
        if meter is not None:
            app.guard.unfinished(caller, meter.spent, "error")
        raise
    if chat.stream:
        return await _stream(request, app.service, req, plan, policy, chat, caller, meter)
    try:
        result = await _complete(request, app, req, plan, policy, caller, cache_flag, meter)
    except TtcError:
        app.guard.unfinished(caller, meter.spent, "error")
        raise
    except asyncio.CancelledError:  # the client went away: what was spent is still billed
        app.guard.unfinished(caller, meter.spent, "disconnect")
        raise
    finally:
        app.metrics.in_flight.dec()
    body = completion_body(req.request_id, plan.tier, plan, result)
    return JSONResponse(body, headers=ttc_headers(plan))


async def _complete(
    request: Request,
    app: AppState,
    req: GenRequest,
    plan: Decision,
    policy: Any,
    caller: Caller,
    cache_flag: bool | None,
    meter: MeteredBackend,
) -> PolicyResult:
    """Run the policy, through the response cache when the request is eligible; then charge."""
    cache = app.shared.cache
    key = cache.key(req, plan, caller.identity) if cache.wanted(req, cache_flag) else None
    outcome = "miss"
    if key is not None:
        outcome, hit = await cache.get(key)
        app.metrics.cache_requests.labels(outcome).inc()
        if hit is not None:
            app.service.served_from_cache(plan)
            return hit  # no worker call, nothing spent, nothing to charge
    result = await until_disconnect(request, app.service.complete(req, plan, policy, meter))
    await app.guard.finished(caller, plan, result)
    if key is None:
        return result
    await cache.put(key, result)
    return replace(result, report={**result.report, "cache": outcome})


async def _stream(
    request: Request,
    service: ChatService,
    req: GenRequest,
    plan: Decision,
    policy: Any,
    chat: ChatCompletionRequest,
    caller: Caller,
    meter: MeteredBackend,
) -> Response:
    app = state_of(request)
    started = time.monotonic()
    events = service.stream(req, plan, policy, meter)
    settled = False  # charged: the result's usage, or what an error left spent
    first: asyncio.Future[Event] = asyncio.ensure_future(anext(events))
    # An error before the first event (no healthy worker, upstream 400) keeps its HTTP status.
    await asyncio.wait({first}, timeout=app.settings.server.stream_keepalive_s)
    if first.done() and isinstance(first.exception(), TtcError):
        app.metrics.in_flight.dec()
        exc = first.exception()
        assert isinstance(exc, TtcError)
        service.failed(plan, exc)
        app.guard.unfinished(caller, meter.spent, "error")
        raise exc

    def on_first_token() -> None:
        app.metrics.ttft.labels(plan.tier, plan.policy.name).observe(time.monotonic() - started)

    def on_done(result: PolicyResult | None, error: TtcError | None) -> None:
        nonlocal settled
        settled = True
        if result is not None:
            service.finished(plan, result, started, stream=True)
            app.guard.finished_later(caller, plan, result)
        elif error is not None:
            service.failed(plan, error)
            app.guard.unfinished(caller, meter.spent, "error")

    def on_close() -> None:
        if not settled:  # the client left before the end
            app.guard.unfinished(caller, meter.spent, "disconnect")

    body = sse_body(
        first,
        events,
        chunks=ChunkFactory(req.request_id, plan.tier),
        plan=plan,
        n=req.n,
        include_usage=chat.include_usage,
        keepalive_s=app.settings.server.stream_keepalive_s,
        on_first_token=on_first_token,
        on_done=on_done,
    )
    return StreamingResponse(
        _counted(body, app, on_close),
        media_type="text/event-stream",
        headers={**ttc_headers(plan), "cache-control": "no-cache", "x-accel-buffering": "no"},
    )


async def _counted(body: Any, app: AppState, on_close: Callable[[], None]) -> Any:
    try:
        async for part in body:
            yield part
    finally:
        app.metrics.in_flight.dec()
        await body.aclose()  # ends the policy's stream: its spend is final from here
        on_close()
