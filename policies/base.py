"""What a policy is: the ``Policy`` protocol, its ``Registration``, and ``stream_whole`` for
policies that only know their answer at the end.

A policy turns one validated request plus the router's ``Decision`` into either a whole
``PolicyResult`` (``run``) or a stream of ``Delta`` events that ends with exactly one
``PolicyResult`` (``stream``). Every token a policy spends, of samples, probes, judge calls and
rejected drafts, is recorded in its ``UsageLedger`` so ``usage`` is honest.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import ClassVar, Generic, Protocol

from core.backend import Backend, Delta
from core.request import Decision, GenRequest
from core.result import PolicyResult
from policies.params import P


class Policy(Protocol):
    name: ClassVar[str]

    async def run(self, req: GenRequest, decision: Decision, backend: Backend) -> PolicyResult: ...

    def stream(
        self, req: GenRequest, decision: Decision, backend: Backend
    ) -> AsyncIterator[Delta | PolicyResult]: ...


@dataclass(frozen=True)
class Registration(Generic[P]):
    """A policy's params model and the factory that turns validated params into the policy;
    each policy module ends with ``REGISTRATION = Registration(...)`` (``policies.registry``)."""

    params: type[P]
    factory: Callable[[P], Policy]

    @property
    def name(self) -> str:
        return self.params.policy_name()


async def stream_whole(
    policy: Policy, req: GenRequest, decision: Decision, backend: Backend
) -> AsyncIterator[Delta | PolicyResult]:
    """``stream`` for a policy that only knows its answer at the end.

    The server keeps the stream alive with SSE comments while ``run`` works, then this emits the
    whole answer as one delta per choice.
    """
    result = await policy.run(req, decision, backend)
    for choice in result.choices:
        if choice.reasoning:  # the thinking first, as a reasoning tier streams it
            yield Delta(index=choice.index, reasoning=choice.reasoning)
        yield Delta(index=choice.index, text=choice.text)
        if choice.tool_calls:  # the calls whole, as the first delta of a streamed call would
            calls = [{"index": i, **call} for i, call in enumerate(choice.tool_calls)]
            yield Delta(index=choice.index, raw={"delta": {"tool_calls": calls}})
        yield Delta(index=choice.index, finish_reason=choice.finish_reason)
    yield result
