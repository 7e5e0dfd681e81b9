"""Every policy holds the thinking budget: ``budgeted(policy)`` (applied by ``registry.build``).

On a reasoning tier (``Decision.thinking`` set by the router) the policy's calls go through a
``ThinkingBackend`` (``policies.thinking``), so samples, chains and judge calls all think
within the budget and always answer; the policy's report gains ``thinking_tokens`` and
``budget_forced`` (unless the policy reports its own: one that continues the thinking itself,
such as ``speculative``, makes calls the backend passes through uncounted). On any other tier
the policy runs as it is.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from typing import ClassVar

from core.backend import Backend, close_now
from core.request import Decision, GenRequest
from core.result import PolicyResult
from policies.base import Policy, PolicyEvent
from policies.thinking import ThinkingBackend


class Budgeted:
    """``policy`` with its calls budgeted; a nested policy (a cascade's stage) that is handed
    an already budgeted backend uses it as it is, so no call is budgeted twice."""

    name: ClassVar[str] = "budgeted"  # the request's policy is ``Decision.params.name``

    def __init__(self, policy: Policy) -> None:
        self.policy = policy

    def _backend(self, decision: Decision, backend: Backend) -> ThinkingBackend | None:
        if decision.thinking is None or isinstance(backend, ThinkingBackend):
            return None
        return ThinkingBackend(backend, decision.thinking)

    async def run(self, req: GenRequest, decision: Decision, backend: Backend) -> PolicyResult:
        thinking = self._backend(decision, backend)
        if thinking is None:
            return await self.policy.run(req, decision, backend)
        result = await self.policy.run(req, decision, thinking)
        return replace(result, report={**thinking.report(), **result.report})

    async def stream(
        self, req: GenRequest, decision: Decision, backend: Backend
    ) -> AsyncIterator[PolicyEvent]:
        thinking = self._backend(decision, backend)
        events = self.policy.stream(req, decision, thinking or backend)
        try:
            async for event in events:
                if isinstance(event, PolicyResult) and thinking is not None:
                    event = replace(event, report={**thinking.report(), **event.report})
                yield event
        finally:  # closed now, so its upstream calls end (and are metered) before settling
            await close_now(events)


def budgeted(policy: Policy) -> Policy:
    return policy if isinstance(policy, Budgeted) else Budgeted(policy)
