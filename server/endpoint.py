"""What an API endpoint contributes to a request's life: parse its body, render the outcome.

An endpoint never authenticates, limits, routes, caches, meters or records: the lifecycle
(``server.lifecycle``) does that, the same way for every endpoint. A new endpoint is one class
implementing ``Endpoint`` and one route that hands it to ``RequestLifecycle.handle``.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from core.backend import Delta
from core.errors import InvalidRequest
from core.progress import Progress
from core.request import Decision, GenRequest
from core.result import PolicyResult
from server.contract import validated
from state.cache import split_cache_flag

# What a policy's stream yields (``policies.base.PolicyEvent``); ``None`` from the lifecycle
# means "still working" (keep-alive). ``Progress`` is rendered by each endpoint in its own form.
Event = Delta | Progress | PolicyResult


@dataclass(frozen=True)
class Call:
    """One parsed request: what the policies see, plus how the client wants the answer."""

    req: GenRequest
    stream: bool = False
    include_usage: bool = False  # a final usage chunk in a stream
    cache: bool | None = None  # the client's ``ttc.cache`` (None: the config decides)
    owner: str = ""  # the caller's identity: what the endpoint stores is visible to it only
    include_reasoning: bool = True  # ``ttc.include_reasoning``: false drops the thinking
    wire: object = None  # the endpoint's own parsed body, for rendering
    created: float = field(default_factory=time.time)  # when the request was parsed


@dataclass(frozen=True)
class Options:
    """The request-level fields of ``ttc`` (the rest are the router's and the policy's). The
    compute contract's fields (``server.contract``) are checked here and stay in ``ttc``: the
    lifecycle resolves them against the caller's key, the router plans within them."""

    ttc: dict[str, Any]
    cache: bool | None = None
    include_reasoning: bool = True


def request_options(ttc: Mapping[str, Any] | None) -> Options:
    rest, cache = split_cache_flag(ttc)
    include = rest.pop("include_reasoning", True)
    if not isinstance(include, bool):
        raise InvalidRequest(
            "ttc.include_reasoning must be true or false", param="ttc.include_reasoning"
        )
    validated(rest)
    return Options(rest, cache, include)


class Endpoint(Protocol):
    name: ClassVar[str]  # label of ``ttc_requests_total{endpoint}`` and of log lines
    id_prefix: ClassVar[str]  # e.g. "chatcmpl-"

    async def parse(self, raw: bytes, request_id: str, deadline: float, owner: str) -> Call:
        """The body as a ``Call``; a bad body raises ``InvalidRequest`` naming the field."""
        ...

    async def render(self, call: Call, decision: Decision, result: PolicyResult) -> dict[str, Any]:
        """The JSON body of a finished, non-streamed request."""
        ...

    def render_stream(
        self, call: Call, decision: Decision, events: AsyncIterator[Event | None]
    ) -> AsyncIterator[bytes]:
        """SSE bytes for ``events`` (``None``: send a keep-alive). ``events`` raises
        ``TtcError`` when the request fails mid-stream: render it as an error event, then end."""
        ...
