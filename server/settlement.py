"""Settling one request: entered once, settled once, whichever way it ends.

A ``Settlement`` is opened when a request arrives (``ttc_requests_in_flight`` +1) and learns
the caller, the decision and the metered backend as the lifecycle gets them. Exactly one of
these ends it; later calls do nothing, so every path may call the one it knows is right:

    finished(result)   the policy answered: probe tokens join the result's ledger, and so does
                       what the metered backend saw spent upstream on a tier beyond what the
                       ledger holds for it (kind ``dropped``: a sub-call a policy let go when
                       the contract cut it, a probe cancelled in flight), so ``usage`` is the
                       bill; then request and token metrics, the router's record (trace,
                       windowed statistics, shadow) and the charge of every token in the ledger
    from_cache(result) answered from the response cache: counted; the router's probe, if one
                       ran, is the result's usage and is charged, nothing else
    failed(error)      a ``TtcError``: request and error metrics; what was spent upstream
                       before it is charged (``ttc_unfinished_tokens_total{outcome="error"}``)
    abandoned()        the client went away: counted as status 499, what was spent upstream
                       is charged (``outcome="disconnect"``)

In every case ``ttc_requests_in_flight`` goes back down once, and the request's span (tracing
on, ``server.tracing``) ends with its outcome.

A budget reservation (``reservation``, taken once the request is routed) is settled to what
was charged, 0 included, in the one call that charges it (``Guard.settle``).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from core.errors import TtcError
from core.metering import MeteredBackend
from core.request import Decision, GenRequest
from core.result import PolicyResult
from core.usage import TokenUsage
from router.router import Router, Routing
from server.auth import Caller, Guard
from server.metrics import Metrics
from state.reservations import Reservation

if TYPE_CHECKING:
    from server.tracing import RequestTrace

CLIENT_CLOSED = "499"  # nginx's status for a client that closed the connection first


class Settlement:
    def __init__(self, metrics: Metrics, guard: Guard) -> None:
        self._metrics = metrics
        self._guard = guard
        self.started = time.monotonic()
        self.caller: Caller | None = None
        self.req: GenRequest | None = None
        self.stream = False
        self.meter: MeteredBackend | None = None
        self.routed: tuple[Router, Routing] | None = None  # the router that decided, and how
        self.reservation: Reservation | None = None  # held of the key's daily budget
        self.trace: RequestTrace | None = None  # the request's span when tracing is on
        self.settled = False
        # Set once the client has gone: an upstream error its leaving causes while the request
        # is torn down (a stream cut under a cancelled read) is its leaving, not a failure.
        self.leaving = False
        metrics.in_flight.inc()

    @property
    def decision(self) -> Decision | None:
        return self.routed[1].decision if self.routed else None

    def finished(self, result: PolicyResult) -> None:
        if not self._settle():
            return
        assert self.routed is not None and self.req is not None
        router, routing = self.routed
        routing.bill_probe(result)
        self._add_dropped(result)
        decision = routing.decision
        latency = time.monotonic() - self.started
        try:  # the charge is made whatever a recorder below does (it is settled only here)
            exemplar = self.trace.finished(result) if self.trace is not None else None
            self._count(decision, "ok")
            m = self._metrics
            policy = decision.params.name
            stream = str(self.stream).lower()
            m.latency.labels(decision.tier, policy, stream).observe(latency, exemplar)
            m.record(decision, result.usage, result.report, exemplar)
            router.record(routing, self.req, result, latency)
        finally:
            self._charge(result.usage.total)  # at least what the meter saw: _add_dropped

    def from_cache(self, result: PolicyResult) -> None:
        if not self._settle():
            return
        if self.routed is not None:
            self.routed[1].bill_probe(result)
        self._count(self.decision, "ok")
        self._metrics.count_tokens(result.usage)
        self._charge(result.usage.total)  # 0 without a probe: releases a reservation

    def failed(self, error: TtcError) -> None:
        if self.leaving:
            self.abandoned()
            return
        if not self._settle():
            return
        if self.trace is not None:
            self.trace.failed(error)
        self._count(self.decision, str(error.status))
        self._metrics.errors.labels(str(error.status), error.code or error.error_type).inc()
        self._charge_unfinished("error")

    def abandoned(self) -> None:
        if self._settle():
            self._count(self.decision, CLIENT_CLOSED)
            self._charge_unfinished("disconnect")

    def _settle(self) -> bool:
        if self.settled:
            return False
        self.settled = True
        self._metrics.in_flight.dec()
        return True

    def _count(self, decision: Decision | None, status: str) -> None:
        tier = decision.tier if decision else "none"
        policy = decision.params.name if decision else "none"
        self._metrics.requests.labels(tier, policy, status).inc()
        self._metrics.contract(self.meter, status)
        if self.trace is not None:
            self.trace.end(self, status)  # the request's span ends with its one settlement

    def _charge_unfinished(self, outcome: str) -> None:
        spent = self.meter.spent if self.meter is not None else TokenUsage()
        if spent.total_tokens > 0:
            self._metrics.unfinished_tokens.labels(outcome).inc(spent.total_tokens)
        self._charge(spent)  # with nothing spent, still releases a reservation

    def _add_dropped(self, result: PolicyResult) -> None:
        """What the meter saw spent on each tier beyond the ledger's count for it, into the
        ledger as kind ``dropped``."""
        if self.meter is None:
            return
        held: dict[str, TokenUsage] = {}
        for _, tier, used in result.usage.items():
            held[tier] = held.get(tier, TokenUsage()) + used
        for tier, spent in self.meter.by_tier.items():
            have = held.get(tier, TokenUsage())
            prompt = max(0, spent.prompt_tokens - have.prompt_tokens)
            completion = max(0, spent.completion_tokens - have.completion_tokens)
            reasoning = min(completion, max(0, spent.reasoning_tokens - have.reasoning_tokens))
            if prompt or completion:
                result.usage.add("dropped", tier, TokenUsage(prompt, completion, reasoning))

    def _charge(self, spent: TokenUsage) -> None:
        if self.caller is not None:
            self._guard.settle(self.caller, self.reservation, spent.total_tokens)
