"""What an upstream's error status means: whose failure it is, and what the client hears.

| status | error | retried elsewhere | counts against the worker |
|---|---|---|---|
| 400, 422 | ``InvalidRequest`` with the upstream's message (the body was at fault) | no | no |
| 401, 403 | ``UpstreamAuthFailed``: the tier's credentials; the tier is not ready | no | no |
| 404, 405, 501 | ``UnsupportedEndpoint`` naming the tier and the endpoint | no | no |
| 429 | ``UpstreamRateLimited``: ``Retry-After`` honoured for that worker | yes | no |
| 5xx | ``WorkerFailed`` | yes | yes |
| another 4xx | ``UpstreamError`` | no | yes |

The upstream's own text is kept only where it helps the client fix its request (400/422) or
an operator read a log (5xx), always with the tier's key removed; a 401/403's text is never
kept at all: hosted APIs quote fragments of the key they were sent ("Incorrect API key
provided: sk-...abcd").
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

from core.errors import (
    InvalidRequest,
    TtcError,
    UnsupportedEndpoint,
    UpstreamAuthFailed,
    UpstreamError,
    UpstreamRateLimited,
    WorkerFailed,
)

# 500: enough of an unparsable error page to recognise it in a log.
TEXT_CHARS = 500


@dataclass(frozen=True)
class Call:
    """The call an error status answered: its tier, its endpoint, the tier's redaction."""

    tier: str
    path: str
    redact: Callable[[str], str] = str


def failure(status: int, body: bytes, retry_after: str | None, call: Call) -> TtcError:
    """The error for an upstream answer with error ``status`` (>= 400)."""
    if status in (401, 403):
        return UpstreamAuthFailed(
            f"tier '{call.tier}': its upstream refused the gateway's credentials ({status})"
        )
    if status in (404, 405, 501):
        return UnsupportedEndpoint(
            f"tier '{call.tier}' does not serve {call.path}: its upstream answered {status}"
        )
    if status == 429:
        return UpstreamRateLimited(
            f"tier '{call.tier}': its upstream is rate limiting the gateway (429)",
            retry_after=retry_after_s(retry_after),
        )
    text = call.redact(upstream_message(body))
    if status in (400, 422):
        return InvalidRequest(text, code="upstream_rejected")
    if status >= 500:
        return WorkerFailed(f"worker answered {status}: {text}")
    return UpstreamError(f"worker answered {status}: {text}")


def upstream_message(body: bytes) -> str:
    """The message of an OpenAI (or vLLM) error body; the start of anything else."""
    try:
        parsed = json.loads(body)
    except ValueError:
        return body[:TEXT_CHARS].decode("utf-8", "replace")
    err = parsed.get("error") if isinstance(parsed, dict) else None
    if isinstance(err, dict):
        return str(err.get("message", err))
    return str(parsed.get("message", parsed)) if isinstance(parsed, dict) else str(parsed)


def retry_after_s(value: str | None, now: Callable[[], float] = time.time) -> float | None:
    """Seconds in a ``Retry-After`` header (a number of seconds or an HTTP date); None when
    absent or unreadable."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - now()
        except (TypeError, ValueError, IndexError):
            return None
    return max(0.0, seconds) if math.isfinite(seconds) else None
