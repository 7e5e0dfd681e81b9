"""One request's life, owned in one place: ``RequestLifecycle.handle``.

    authenticate -> read + parse (the endpoint) -> admit (limits) -> route (maybe a probe)
      -> authorize (tier) -> [cache] -> reserve (the key's daily budget)
      -> run the policy, or stream it -> settle -> render

Every endpoint goes through ``handle`` with an ``Endpoint`` that parses its body and renders
its answer; nothing else differs between endpoints. The ``Settlement`` (``server.settlement``)
is opened on arrival and settled exactly once, whichever way the request ends: answered,
refused, failed, past its deadline, its client gone, its stream cut. The whole request runs
under its deadline (``server.request_timeout_s``, the probe included), and a client that
disconnects cancels it, which closes every upstream call it has in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable
from dataclasses import replace
from typing import TypeVar

import anyio
from fastapi import Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

from core.backend import Backend, Delta, close_now
from core.calibration import PromptCalibration
from core.contract import ContractMeter
from core.errors import DeadlineExceeded, InternalError, TtcError, UpstreamError
from core.metering import MeteredBackend
from core.request import Decision, GenRequest
from core.result import PolicyResult
from policies import registry
from policies.base import Policy
from router.router import Router
from server.api.common.stream import with_keepalive
from server.auth import Guard
from server.body import read_body
from server.config import ServerConfig
from server.contract import requested, reserve_budget, resolved
from server.endpoint import Call, Endpoint, Event
from server.metrics import Metrics
from server.settlement import Settlement
from server.tracing import Tracing, traced_events
from state.cache import ResponseCache
from state.reservations import Reservation

log = logging.getLogger("ttc.server")
T = TypeVar("T")


class RequestLifecycle:
    def __init__(
        self,
        router: Router,
        backend: Backend,
        guard: Guard,
        cache: ResponseCache,
        metrics: Metrics,
        config: ServerConfig,
        tracing: Tracing | None = None,
    ) -> None:
        self.router = router  # replaced on a config reload; a running request keeps its own
        self._tracing = tracing
        self._backend = backend
        self._guard = guard
        self._cache = cache
        self._metrics = metrics
        self._config = config
        self._calibration = PromptCalibration()  # every tier's prompt counts, learned from usage

    async def handle(self, request: Request, endpoint: Endpoint) -> Response:
        life = Settlement(self._metrics, self._guard)
        if self._tracing is None:
            return await self._handle(request, endpoint, life)
        life.trace = self._tracing.request(request.headers, endpoint.name, request.url.path)
        with life.trace.active():  # upstream calls open their spans under the request's
            return await self._handle(request, endpoint, life)

    async def _handle(self, request: Request, endpoint: Endpoint, life: Settlement) -> Response:
        try:
            call = await self._admit(request, endpoint, life)
            decision = await self._route(call.req, life)
            call, decision = self._lengthened(call, decision, life)
            if life.caller is not None:
                self._guard.authorize(life.caller, decision)  # a refused plan still pays its probe
            if call.stream:
                call = await self._reserve(call, life)
                return await self._stream(endpoint, call, decision, life)
            result = await self._complete(request, call, decision, life)
            body = await endpoint.render(call, decision, result)
            return JSONResponse(body, headers=_headers(decision))
        except TtcError as exc:
            life.failed(exc)
            raise
        except asyncio.CancelledError:
            life.abandoned()
            raise
        except Exception as exc:  # a bug: settled and answered like any error, logged once
            log.exception("internal error in the gateway")
            error = InternalError("internal error in the gateway")
            life.failed(error)
            raise error from exc

    async def _admit(self, request: Request, endpoint: Endpoint, life: Settlement) -> Call:
        life.caller = await self._guard.authenticate(request)
        raw = await read_body(request, self._config.max_body_bytes)
        request_id = f"{endpoint.id_prefix}{uuid.uuid4().hex}"
        deadline = time.monotonic() + self._config.request_timeout_s
        call = await endpoint.parse(raw, request_id, deadline, life.caller.identity)
        call = _with_contract(call, life)
        life.req, life.stream = call.req, call.stream
        await self._guard.admit(life.caller)  # before routing: a refused request never probes
        return call

    async def _route(self, req: GenRequest, life: Settlement) -> Decision:
        router = self.router
        contract = None
        if req.contract.bounded:
            contract = ContractMeter(
                req.contract, router.tier_costs, started=life.started, counter=self._calibration
            )
        # bills a probe if routing fails
        life.meter = MeteredBackend(self._backend, contract, self._calibration)
        async with within_deadline(req, " while routing"):
            routing = await router.route(req, life.meter)
        life.routed = (router, routing)
        return routing.decision

    def _lengthened(
        self, call: Call, decision: Decision, life: Settlement
    ) -> tuple[Call, Decision]:
        """The call with its tier's default ``max_tokens`` if the client sent none, and the
        decision saying so."""
        assert life.routed is not None
        req = life.routed[0].with_default_length(call.req, decision)
        if req is call.req:
            return call, decision
        life.req = req
        why = f"no max_tokens: the tier's default, {req.max_tokens}"
        return replace(call, req=req), replace(decision, reasons=(*decision.reasons, why))

    async def _reserve(self, call: Call, life: Settlement) -> Call:
        """Reserve the request's worst case of its key's daily budget before anything is
        drawn (after the cache: a cached answer costs nothing); the call with its contract, if
        the reservation shrank it."""
        assert life.req is not None and life.routed is not None
        decided_by = life.routed[0]  # the router that decided (a reload may have replaced it)
        await reserve_budget(self._guard, life, decided_by.tier_costs)
        return replace(call, req=life.req)

    async def _complete(
        self, request: Request, call: Call, decision: Decision, life: Settlement
    ) -> PolicyResult:
        """Run the policy, through the response cache when the request is eligible."""
        cache, req = self._cache, call.req
        key = None
        if cache.wanted(req, call.cache):
            assert life.caller is not None
            key = cache.key(req, decision, life.caller.identity)
            outcome, hit = await cache.get(key)
            self._metrics.cache_requests.labels(outcome).inc()
            if hit is not None:
                life.from_cache(hit)
                return hit  # no worker call; the router's probe, if any, is charged
        req = (await self._reserve(call, life)).req
        result = await until_disconnect(request, self._run(req, decision, life), life)
        result = with_contract_report(result, life.meter, life.reservation)
        life.finished(result)
        if key is None:
            return result
        await cache.put(key, result)
        return replace(result, report={**result.report, "cache": outcome})

    async def _run(self, req: GenRequest, decision: Decision, life: Settlement) -> PolicyResult:
        assert life.meter is not None
        async with within_deadline(req):
            return await _policy(decision).run(req, decision, life.meter)

    async def _stream(
        self, endpoint: Endpoint, call: Call, decision: Decision, life: Settlement
    ) -> Response:
        assert life.meter is not None
        events = self._settled_events(call.req, decision, life.meter, life)
        events = traced_events(life.trace, events)  # the request's span current in each step
        first: asyncio.Future[Event] = asyncio.ensure_future(anext(events))
        # An error before the first event (no healthy worker, upstream 400) keeps its status.
        await asyncio.wait({first}, timeout=self._config.stream_keepalive_s)
        if first.done() and isinstance(first.exception(), TtcError):
            error = first.exception()
            await close_now(events)
            raise error  # type: ignore[misc]
        ticking = with_keepalive(first, events, self._config.stream_keepalive_s)
        body = endpoint.render_stream(call, decision, ticking)
        return StreamingResponse(
            _closing(body, (ticking, events), life),
            media_type="text/event-stream",
            headers={**_headers(decision), "cache-control": "no-cache", "x-accel-buffering": "no"},
        )

    async def _settled_events(
        self, req: GenRequest, decision: Decision, backend: MeteredBackend, life: Settlement
    ) -> AsyncGenerator[Event, None]:
        """The policy's events under the deadline; the result and any error settle ``life``
        before the renderer sees them, so the probe is in the usage the client gets."""
        started = time.monotonic()
        first_token = True
        events = _policy(decision).stream(req, decision, backend)
        # The deadline is entered anew around each event: the server awaits every event in a
        # task of its own (``with_keepalive``), and a timeout only cancels the task that
        # entered it, so one timeout around the whole stream would guard the first event only.
        deadline = loop_deadline(req)
        try:
            while True:
                try:
                    async with asyncio.timeout_at(deadline):
                        event = await anext(events)
                except StopAsyncIteration:
                    return
                except TimeoutError as exc:
                    raise DeadlineExceeded("the request exceeded its deadline") from exc
                if isinstance(event, PolicyResult):
                    event = with_contract_report(event, backend, life.reservation)
                    life.finished(event)
                elif first_token and isinstance(event, Delta) and event.text:
                    first_token = False
                    self._metrics.ttft.labels(decision.tier, decision.params.name).observe(
                        time.monotonic() - started
                    )
                yield event
        except TtcError as exc:
            life.failed(exc)
            raise
        except Exception as exc:  # a bug in a policy must still end the stream properly
            log.exception("stream failed")
            error = UpstreamError("the stream failed inside the gateway", code="stream_error")
            life.failed(error)
            raise error from exc
        finally:
            await close_now(events)


async def _closing(
    body: AsyncIterator[bytes], sources: tuple[AsyncIterator[object], ...], life: Settlement
) -> AsyncIterator[bytes]:
    """The response body; when it ends, its sources are closed outermost first (the keep-alive
    ticker cancels the event it awaits, then the policy's stream closes its upstream calls, so
    its spend is final), and a request that never settled lost its client."""
    completed = False
    try:
        async for part in body:
            yield part
        completed = True
    finally:
        life.leaving = not completed  # cut short: the client left (or the server is stopping)
        # Shielded: Starlette ends a stream whose client left by cancelling its task group,
        # and that cancellation is delivered again at every await inside it; unshielded, the
        # first await here would stop the closing half-way and the request would settle
        # before its upstream calls had counted what they spent. Bounded, so a close that
        # never returns cannot hold the response's task.
        with anyio.CancelScope(shield=True), anyio.move_on_after(CLOSE_TIMEOUT_S):
            await close_now(body)
            for source in sources:
                await close_now(source)
        life.abandoned()  # does nothing if the request settled


CLOSE_TIMEOUT_S = 10.0  # closing a finished or abandoned stream's upstream calls

# 0.5 s: a policy stopped at ttc.deadline_ms answers from what it drew (a vote, no I/O) within
# this; past it the request is a 504 like any request past its deadline.
DEADLINE_GRACE_S = 0.5


def _with_contract(call: Call, life: Settlement) -> Call:
    """The request with its compute contract resolved against the caller's key, and its
    deadline tightened by ``ttc.deadline_ms`` (plus the grace a stopped policy answers in)."""
    assert life.caller is not None
    req = call.req
    contract = resolved(requested(req.ttc), life.caller.quota.contract)
    deadline = req.deadline
    if contract.deadline_ms is not None:
        own = life.started + contract.deadline_ms / 1000 + DEADLINE_GRACE_S
        deadline = own if deadline is None else min(deadline, own)
    return replace(call, req=replace(req, contract=contract, deadline=deadline))


def with_contract_report(
    result: PolicyResult, meter: MeteredBackend | None, reservation: Reservation | None = None
) -> PolicyResult:
    """``ttc.contract`` in the report: the terms, what was used, and the contract's stop; with
    a budget reservation, ``reserved`` (and ``shrunk_from``, the worst case it asked for, when
    ``over_budget: shrink`` made the reservation the request's ``max_total_tokens``)."""
    contract = meter.contract if meter is not None else None
    if contract is None and reservation is None:
        return result
    used = meter.spent.total_tokens if meter is not None else 0
    terms = (
        contract.report()
        if contract is not None
        else {"max_total_tokens": None, "used_tokens": used}
    )
    if reservation is not None:
        terms["reserved"] = reservation.tokens
        if reservation.shrunk:
            terms["shrunk_from"] = reservation.wanted
    report = {**result.report, "contract": terms}
    if contract is not None and contract.stop_reason is not None:
        report.update(stop_reason=contract.stop_reason, early_stopped=True)
    return replace(result, report=report)


def _policy(decision: Decision) -> Policy:
    return registry.for_decision(decision)


def _headers(decision: Decision) -> dict[str, str]:
    return {"x-ttc-tier": decision.tier, "x-ttc-policy": decision.params.name}


async def until_disconnect(
    request: Request, work: Awaitable[T], life: Settlement | None = None
) -> T:
    """Await ``work``; if the client goes away first, cancel it (and its upstream calls), and
    mark ``life`` as leaving, so what the cancellation breaks settles as the client's leaving.

    One watcher task per request, cancelling this handler's task on ``http.disconnect``.
    """
    handler = asyncio.current_task()

    async def watch() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass
        if life is not None:
            life.leaving = True
        if handler is not None:
            handler.cancel()

    watcher = asyncio.ensure_future(watch())
    try:
        return await work
    finally:
        watcher.cancel()


@contextlib.asynccontextmanager
async def within_deadline(req: GenRequest, where: str = "") -> AsyncIterator[None]:
    """Run the body under the request's deadline; running past it is ``DeadlineExceeded``."""
    try:
        async with asyncio.timeout_at(loop_deadline(req)):
            yield
    except TimeoutError as exc:
        raise DeadlineExceeded(f"the request exceeded its deadline{where}") from exc


def loop_deadline(req: GenRequest) -> float | None:
    """``req.deadline`` is on ``time.monotonic()``, which asyncio's loop clock also uses."""
    if req.deadline is None:
        return None
    loop = asyncio.get_running_loop()
    return loop.time() + (req.deadline - time.monotonic())
