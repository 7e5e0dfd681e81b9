"""The one exception hierarchy of ttc-gateway.

    TtcError                      status  type                    code
     +-- InvalidRequest            400    invalid_request_error   (varies)
     +-- Unauthorized              401    authentication_error    invalid_api_key
     +-- Forbidden                 403    permission_error        tier_not_allowed
     +-- ModelNotFound             404    invalid_request_error   model_not_found
     +-- PayloadTooLarge           413    invalid_request_error   payload_too_large
     +-- RateLimited               429    rate_limit_error        rate_limit_exceeded
     +-- UpstreamError             502    upstream_error          upstream_error
     +-- UpstreamUnavailable       503    service_unavailable     no_healthy_worker
     +-- DeadlineExceeded          504    timeout_error           deadline_exceeded

Library errors (httpx, redis, pydantic) are translated into these at the package boundary
with ``raise ... from exc``; ``server.errors`` renders every one as the OpenAI error envelope.
This module lives in ``policies`` because it is the lowest package every other one imports.
"""

from __future__ import annotations


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
