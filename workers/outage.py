"""What a caller hears when a tier has no worker left: what failed, and when to come back.

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
from collections.abc import Sequence

from core.errors import UpstreamUnavailable
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
