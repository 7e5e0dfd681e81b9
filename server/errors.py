"""The one place errors become OpenAI error envelopes: {"error": {message, type, param, code}}."""

from __future__ import annotations

import logging
import re

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from core.errors import InvalidRequest, TtcError
from server.api.common.render import envelope, error_body

log = logging.getLogger("ttc.server")

# Labels pydantic puts in an error's location: union members ("str", "list[str]",
# "literal['auto']", a model's class name), validators ("function-after[...]"), "[key]".
_LABEL = re.compile(
    r"str|int|float|bool|none|\[key\]|(?:constrained|function|json-or-python)-.*|"
    r"[a-z]+\[.*\]|[A-Z][A-Za-z0-9_]*"
)

_STATUS_TYPES = {
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    429: "rate_limit_error",
}


def error_response(exc: TtcError) -> JSONResponse:
    headers = {}
    if exc.retry_after is not None:
        headers["Retry-After"] = str(max(1, round(exc.retry_after)))
    return JSONResponse(error_body(exc), status_code=exc.status, headers=headers)


def from_validation_error(exc: ValidationError) -> InvalidRequest:
    """One pydantic error, as OpenAI reports it: a message and the offending ``param``.

    ``param`` is the field's dotted path (``messages.0.content``) without the labels pydantic
    adds to name a union's members or a validator. Of the errors on the first failing field,
    the one that reached deepest is reported: for a union, the member the input was meant for.
    """
    errors = exc.errors()
    field = errors[0]["loc"][:1]
    err = max((e for e in errors if e["loc"][:1] == field), key=lambda e: len(e["loc"]))
    param = ".".join(str(p) for p in err["loc"] if not _is_label(p)) or None
    message = err["msg"].removeprefix("Value error, ")
    if param and err["type"] == "missing":
        message = f"'{param}' is a required property"
    elif param:
        message = f"Invalid value for '{param}': {message}"
    return InvalidRequest(message, param=param, code="invalid_value")


def _is_label(part: str | int) -> bool:
    return isinstance(part, str) and _LABEL.fullmatch(part) is not None


def install(app: FastAPI) -> None:
    async def ttc_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, TtcError)
        return error_response(exc)

    async def http_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        kind = _STATUS_TYPES.get(exc.status_code, "invalid_request_error")
        body = envelope(str(exc.detail), kind, None, None)
        return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)

    async def validation_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return error_response(InvalidRequest(str(exc.errors()[0].get("msg")), code="invalid"))

    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=exc)
        body = envelope("internal error in the gateway", "internal_error", None, None)
        return JSONResponse(body, status_code=500)

    app.add_exception_handler(TtcError, ttc_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(Exception, unexpected)
