"""The one exception hierarchy of ttc-gateway.

    TtcError                      status  type                    code
     +-- InvalidRequest            400    invalid_request_error   (varies)
     |    +-- UnsupportedByTier    400    invalid_request_error   unsupported_parameter
     +-- ContractReached           (the request's compute contract is spent: core.contract)
     |    +-- BudgetReached        400    invalid_request_error   contract_too_small
     |    +-- DeadlineReached      504    timeout_error           deadline_exceeded
     +-- Unauthorized              401    authentication_error    invalid_api_key
     +-- Forbidden                 403    permission_error        tier_not_allowed
     +-- ModelNotFound             404    invalid_request_error   model_not_found
     +-- NotFound                  404    invalid_request_error   not_found
     +-- PayloadTooLarge           413    invalid_request_error   payload_too_large
     +-- RateLimited               429    rate_limit_error        rate_limit_exceeded
     |    +-- LimitExceeded        429    rate_limit_error        (or insufficient_quota)
     |    +-- UpstreamRateLimited  429    rate_limit_error        upstream_rate_limited
     +-- UpstreamError             502    upstream_error          upstream_error
     |    +-- StreamInterrupted    502    upstream_error          stream_interrupted
     +-- UpstreamAuthFailed        502    upstream_error          upstream_auth_failed
     +-- UnsupportedEndpoint       501    invalid_request_error   unsupported_endpoint
     +-- UpstreamUnavailable       503    service_unavailable     no_healthy_worker
     +-- WorkerFailed              503    service_unavailable     worker_failed
     +-- DeadlineExceeded          504    timeout_error           deadline_exceeded
     +-- InternalError             500    internal_error          internal_error
     +-- ModelPrepareError         500    internal_error          (none: a CLI error)

Library errors (httpx, redis, pydantic) are translated into these at the package boundary
with ``raise ... from exc``; ``server.errors`` renders every one as the OpenAI error envelope.
``WorkerFailed`` never reaches a client: the pool retries it on another worker and turns the
last one into ``UpstreamUnavailable``. The three upstream answers that are neither the worker's
fault nor the client's body's (``UpstreamAuthFailed``, ``UnsupportedEndpoint``,
``UpstreamRateLimited``) sit outside ``UpstreamError`` so the pool never counts them against a
worker's breaker. Errors internal to one package that never cross its
boundary (``state.redis.StateUnavailable``, ``router.probe.ProbeFailed``) are not part of it.
"""

from __future__ import annotations

from core.usage import TokenUsage


class TtcError(Exception):
    """Base error; carries what the OpenAI error envelope needs."""

    status: int = 500
    error_type: str = "internal_error"
    code: str | None = None

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.retry_after = retry_after
        if code is not None:
            self.code = code


# 256: longer than any model or tier name in use; a client's 10,000-character name is quoted
# this far and no further, so an error body (or a span) never mirrors a payload back in full.
QUOTED_CHARS = 256


def clipped(value: str) -> str:
    """``value`` cut to ``QUOTED_CHARS`` characters, marked when it was cut."""
    return value if len(value) <= QUOTED_CHARS else value[:QUOTED_CHARS] + "..."


def quoted(value: str) -> str:
    """``value`` (a name the client sent) in single quotes for an error message: at most
    ``QUOTED_CHARS`` characters of it, then how long it was."""
    if len(value) <= QUOTED_CHARS:
        return f"'{value}'"
    return f"'{clipped(value)}' ({len(value):,} characters)"


class InvalidRequest(TtcError):
    status = 400
    error_type = "invalid_request_error"


class Unauthorized(TtcError):
    status = 401
    error_type = "authentication_error"
    code = "invalid_api_key"


class Forbidden(TtcError):
    status = 403
    error_type = "permission_error"
    code = "tier_not_allowed"


class ModelNotFound(TtcError):
    status = 404
    error_type = "invalid_request_error"
    code = "model_not_found"


class NotFound(TtcError):
    """A stored object (a response) that does not exist, or not for this API key."""

    status = 404
    error_type = "invalid_request_error"
    code = "not_found"


class PayloadTooLarge(TtcError):
    status = 413
    error_type = "invalid_request_error"
    code = "payload_too_large"


class RateLimited(TtcError):
    status = 429
    error_type = "rate_limit_error"
    code = "rate_limit_exceeded"


class UpstreamError(TtcError):
    """The worker answered, but with something we cannot use (a 4xx/5xx we cannot retry)."""

    status = 502
    error_type = "upstream_error"
    code = "upstream_error"


class UpstreamUnavailable(TtcError):
    """No worker of the tier could take the request; always carries ``retry_after``."""

    status = 503
    error_type = "service_unavailable"
    code = "no_healthy_worker"


class DeadlineExceeded(TtcError):
    status = 504
    error_type = "timeout_error"
    code = "deadline_exceeded"


class LimitExceeded(RateLimited):
    """429 for one exhausted window; ``reason`` is rpm, tpm or tokens_per_day."""

    def __init__(self, message: str, *, reason: str, retry_after: float) -> None:
        code = "insufficient_quota" if reason == "tokens_per_day" else None
        super().__init__(message, code=code, retry_after=retry_after)
        self.reason = reason


class StreamInterrupted(UpstreamError):
    """A worker failed after part of the answer was streamed; ``usage`` is what it cost so far."""

    code = "stream_interrupted"

    def __init__(self, message: str, *, usage: TokenUsage) -> None:
        super().__init__(message)
        self.usage = usage


class WorkerFailed(TtcError):
    """The worker could not take the request; safe to retry elsewhere (nothing was streamed)."""

    status = 503
    error_type = "service_unavailable"
    code = "worker_failed"


class ContractReached(TtcError):
    """The request's compute contract (``ttc.max_total_tokens``, ``ttc.max_cost``,
    ``ttc.deadline_ms``) is spent: raised by the metered backend for a sub-call it will not
    start or a stream it cut. A policy catches it, stops drawing and answers with the best it
    has; one that has nothing lets it through, and the client gets it as this error."""

    reason: str = "budget"  # the report's ``stop_reason``


class BudgetReached(ContractReached):
    status = 400
    error_type = "invalid_request_error"
    code = "contract_too_small"
    reason = "budget"


class DeadlineReached(ContractReached):
    status = 504
    error_type = "timeout_error"
    code = "deadline_exceeded"
    reason = "deadline"


class ModelPrepareError(TtcError):
    """The model cannot be prepared (missing package, unknown name, conversion failure)."""


class InternalError(TtcError):
    """A bug in the gateway, caught at the request's boundary: the request is settled and
    answered like any other error, and the connection stays usable."""

    status = 500
    error_type = "internal_error"
    code = "internal_error"


class UnsupportedByTier(InvalidRequest):
    """The request asks for what the tier's engine does not serve (a capability, or a field it
    does not take); caught at the worker edge before anything is sent upstream."""

    code = "unsupported_parameter"

    def __init__(self, message: str, *, tier: str, capability: str | None, param: str) -> None:
        super().__init__(message, param=param)
        self.tier = tier
        self.capability = capability


class UnsupportedEndpoint(TtcError):
    """The tier's upstream does not serve the endpoint (its engine lacks it, or the upstream
    answered 404, 405 or 501): the request's failure, never the worker's."""

    status = 501
    error_type = "invalid_request_error"
    code = "unsupported_endpoint"


class UpstreamAuthFailed(TtcError):
    """The tier's upstream refused the gateway's credentials (401 or 403). Its error text is
    never relayed (hosted APIs quote fragments of the key they were sent)."""

    status = 502
    error_type = "upstream_error"
    code = "upstream_auth_failed"


class UpstreamRateLimited(RateLimited):
    """Every worker of the tier is rate limited by its upstream (a 429); ``retry_after`` is
    when the soonest one said to come back."""

    code = "upstream_rate_limited"
