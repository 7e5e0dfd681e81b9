"""What a caller hears when a tier has no worker left: what failed, and when to come back.

A tier whose workers are kept away by their upstreams' rate limits (429s) is a 429 with the
soonest ``Retry-After``; any other outage is a 503.

``Retry-After`` says when the next try is due, not a constant: the next health check for a
worker that was down (a passing check re-admits it), the end of the backoff for one whose calls
failed, now for one still closed or running a trial; the soonest of the tier's workers, in
whole seconds rounded up, at least 1 and at most the configured cap. The message names the
last failure (``a worker answered 500: ...``), never a worker's address: internal addresses
stay in the gateway's log.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence

from core.errors import UpstreamRateLimited, UpstreamUnavailable
from workers.gate import Gate
from workers.worker import Worker

log = logging.getLogger("ttc.workers")


def retry_after(workers: Sequence[Worker], check_in: float | None, cap: int) -> int:
    """Whole seconds until one of ``workers`` may take a request; ``check_in``: seconds to the
    next health check (None: none scheduled)."""
    waits = [w.breaker.next_try_in(check_in) for w in workers]
    soonest = min(waits, default=check_in or 0.0)
    return min(cap, max(1, math.ceil(soonest)))


def unavailable(
    tier: str, tried: Sequence[Worker], workers: Sequence[Worker], seconds: int
) -> UpstreamUnavailable:
    """The 503 for ``tier``; ``tried``: the workers this request tried, in order."""
    failed = [w for w in (*reversed(tried), *workers) if w.last_error]
    cause = f" (last failure: {failed[0].last_error})" if failed else ""
    if tried:
        urls = ", ".join(w.url for w in tried)
        log.info("tier %s: no worker left after trying %s%s", tier, urls, cause)
    return UpstreamUnavailable(
        f"no worker of tier '{tier}' could take the request{cause}; retry after {seconds} s",
        retry_after=seconds,
    )


def rate_limited(
    tier: str, gate: Gate, workers: Sequence[Worker], tried: Mapping[str, Worker]
) -> UpstreamRateLimited | None:
    """The 429 for ``tier`` when some of its workers are cooling off a 429 and no other can
    take the request; its ``Retry-After`` is when the soonest stops cooling."""
    cooling = gate.cool_left(tier, (w.url for w in workers))
    if cooling is None:
        return None
    if any(
        w.breaker.admits() and w.url not in tried and not gate.cooling(tier, w.url) for w in workers
    ):
        return None
    seconds = max(1, math.ceil(cooling))
    return UpstreamRateLimited(
        f"tier '{tier}': its upstream is rate limiting the gateway; retry after {seconds} s",
        retry_after=seconds,
    )
