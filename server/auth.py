"""Who is calling, what they may use, and how much: the checks around one chat request.

The route calls, in order: ``authenticate`` (only when ``auth.enabled``: 401
``invalid_api_key`` for a missing or wrong ``Authorization: Bearer`` key, 401
``ambiguous_credentials`` for two ``Authorization`` headers, whichever holds a key: neither
the first nor the last wins), ``admit`` (429 with ``Retry-After`` over rpm, tpm or the daily
budget; before planning, because planning may already call a model for a difficulty probe),
then plans, then ``authorize`` (403 when the key may not use the decided tier). A key with a
daily budget then ``reserve``s the routed request's worst case (``state.reservations``: a 429
with ``Retry-After`` when the budget left cannot hold it, or less than asked under
``over_budget: shrink``); ``settle`` releases that reservation and bills the request's real
spend, ``charge`` bills a request that holds none (``server.settlement`` calls one of them
once). With auth off and no limits configured none of these touches the network.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request

from core.errors import Forbidden, LimitExceeded, Unauthorized, UpstreamUnavailable
from core.request import Decision
from policies.tiers import decision_tiers
from server.metrics import Metrics
from state.keys import ApiKey, KeysUnavailable, Quota
from state.reservations import BudgetReservations, Refusal, Reservation
from state.shared import SharedState

log = logging.getLogger("ttc.server")
ANONYMOUS = "anonymous"
# Charges still being written when the gateway stops: each ends within redis.timeout_s.
_MAX_BACKGROUND = 10_000


@dataclass(frozen=True)
class Caller:
    """The authenticated key (None with auth off) and the identity its limits count under."""

    key: ApiKey | None
    identity: str
    quota: Quota

    @property
    def name(self) -> str:
        return self.key.name if self.key else ANONYMOUS


def bearer_token(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


class Guard:
    def __init__(self, shared: SharedState, metrics: Metrics) -> None:
        self._shared = shared
        self._metrics = metrics
        self._enabled = shared.auth.enabled
        lim = shared.limits_config
        self._anonymous = Caller(
            None, ANONYMOUS, Quota(lim.rpm, lim.tpm, lim.tokens_per_day, lim.contract)
        )
        self._background: set[asyncio.Task[None]] = set()
        self._reservations = BudgetReservations(shared.limiter, shared.redis)
        self.context_tokens = lim.context_tokens
        self.reservation_margin_s = lim.reservation_margin_s

    async def authenticate(self, request: Request) -> Caller:
        if not self._enabled:
            return self._anonymous
        headers = request.headers.getlist("authorization")
        if len(headers) > 1:
            raise Unauthorized(
                "You provided several Authorization headers. Provide exactly one "
                "(Authorization: Bearer YOUR_KEY).",
                code="ambiguous_credentials",
            )
        secret = bearer_token(headers[0] if headers else None)
        if secret is None:
            raise Unauthorized(
                "You didn't provide an API key. Provide it in an Authorization header "
                "using Bearer auth (Authorization: Bearer YOUR_KEY)."
            )
        try:
            key = await self._shared.keys.lookup(secret)
        except KeysUnavailable as exc:
            raise UpstreamUnavailable(
                "The API key cannot be verified right now; retry shortly.",
                code="auth_unavailable",
                retry_after=self._shared.redis.config.open_s,
            ) from exc
        if key is None:
            raise Unauthorized("Incorrect API key provided.")  # never echo any part of it
        return Caller(key, key.key_id, key.quota)

    def authorize(self, caller: Caller, decision: Decision) -> None:
        """Every tier the decision may call, the policy's second tier included."""
        if caller.key is None:
            return
        for tier in decision_tiers(decision):
            if caller.key.may_use(tier):
                continue
            if tier == decision.tier:
                raise Forbidden(f"This API key may not use the tier '{tier}'.", param="model")
            raise Forbidden(
                f"This API key may not use the tier '{tier}', which the policy "
                f"'{decision.params.name}' would call.",
                param="ttc.policy",
            )

    async def admit(self, caller: Caller) -> None:
        if not caller.quota.limited:
            return
        try:
            await self._shared.limiter.admit(caller.identity, caller.quota)
        except LimitExceeded as exc:
            self._metrics.rate_limited.labels(exc.reason).inc()
            raise

    async def reserve(
        self, caller: Caller, want: int, least: int, ttl_s: float
    ) -> Reservation | None:
        """Hold ``want`` tokens of the caller's daily budget (at least ``least``) for ``ttl_s``;
        None when the key has no daily budget; ``LimitExceeded`` when it cannot hold them."""
        budget = caller.quota.tokens_per_day
        if budget is None:
            return None
        held = await self._reservations.reserve(caller.identity, budget, want, least, ttl_s)
        if isinstance(held, Refusal):
            self._metrics.budget_rejected.labels(held.cause).inc()
            self._metrics.rate_limited.labels("tokens_per_day").inc()
            raise held.error()
        self._metrics.budget_reserved.inc(held.tokens)
        self._metrics.budget_in_flight.inc(held.tokens)
        if held.shrunk:
            self._metrics.budget_shrunk.inc()
        return held

    def settle(self, caller: Caller, reservation: Reservation | None, tokens: int) -> None:
        """Release ``reservation`` and charge ``tokens`` in one step, in the background (as
        ``charge``); without a reservation, ``charge``."""
        if reservation is None:
            self.charge(caller, tokens)
            return
        self._metrics.budget_in_flight.dec(reservation.tokens)
        self._later(self._reservations.settle(reservation, caller.quota, tokens))

    def charge(self, caller: Caller, tokens: int) -> None:
        """Charge ``tokens`` to the caller's limits, in the background: this runs where a
        request is being settled (maybe a cancelled handler or a closed stream)."""
        if caller.quota.limited and tokens > 0:
            self._later(self._shared.limiter.charge(caller.identity, caller.quota, tokens))

    def _later(self, charge: Coroutine[Any, Any, None]) -> None:
        if len(self._background) >= _MAX_BACKGROUND:
            charge.close()
            # A dropped settlement's reservation is freed when it expires (state.reservations).
            log.warning("dropping a token charge: %d charges already pending", _MAX_BACKGROUND)
            return
        task = asyncio.ensure_future(charge)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def close(self) -> None:
        if self._background:
            await asyncio.wait(set(self._background))
