"""What a policy is: the ``Policy`` protocol, its ``Registration``, and ``stream_whole`` for
policies that only know their answer at the end.

A policy turns one validated request plus the router's ``Decision`` into either a whole
``PolicyResult`` (``run``) or a stream of events (``PolicyEvent``) that ends with exactly one
``PolicyResult`` (``stream``): ``Delta`` pieces of the answer, and, from a policy that works in
rounds before it knows its answer, ``Progress`` after each round (``core.progress``). Every
token a policy spends, of samples, probes, judge calls and rejected drafts, is recorded in its
``UsageLedger`` so ``usage`` is honest.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from core.backend import Backend, Delta
from core.progress import Progress
from core.request import Decision, GenRequest
from core.result import PolicyResult
from policies.facts import Facts
from policies.params import P

# What a policy's ``stream`` yields; the last event is the ``PolicyResult``.
PolicyEvent = Delta | Progress | PolicyResult
E = TypeVar("E")


class Policy(Protocol):
    name: ClassVar[str]

    async def run(self, req: GenRequest, decision: Decision, backend: Backend) -> PolicyResult: ...

    def stream(
        self, req: GenRequest, decision: Decision, backend: Backend
    ) -> AsyncIterator[PolicyEvent]: ...


@dataclass(frozen=True)
class Registration(Generic[P]):
    """A policy's params model, the factory that turns validated params into the policy, and
    what the gateway knows of it (``policies.facts``); each policy module ends with
    ``REGISTRATION = Registration(...)`` (``policies.registry``)."""

    params: type[P]
    factory: Callable[[P], Policy]
    facts: Facts

    @property
    def name(self) -> str:
        return self.params.policy_name()


async def stream_whole(
    policy: Policy, req: GenRequest, decision: Decision, backend: Backend
) -> AsyncIterator[PolicyEvent]:
    """``stream`` for a policy that only knows its answer at the end.

    The server keeps the stream alive with SSE comments while ``run`` works, then this emits the
    whole answer (``answer_deltas``).
    """
    result = await policy.run(req, decision, backend)
    for delta in answer_deltas(result):
        yield delta
    yield result


def answer_deltas(result: PolicyResult, *, thinking: bool = True) -> Iterator[Delta]:
    """A decided answer as deltas, per choice: its thinking (as a reasoning tier streams it;
    not when ``thinking`` is False: it streamed already), its text, its tool calls whole (as
    the first delta of a streamed call would carry them), then its finish. The text carries
    the choice's logprobs, in the worker's own form, as a streamed chunk would."""
    for choice in result.choices:
        if choice.reasoning and thinking:
            yield Delta(index=choice.index, reasoning=choice.reasoning)
        raw = {"logprobs": choice.logprobs} if choice.logprobs else {}
        yield Delta(index=choice.index, text=choice.text, raw=raw)
        if choice.tool_calls:
            calls = [{"index": i, **call} for i, call in enumerate(choice.tool_calls)]
            yield Delta(index=choice.index, raw={"delta": {"tool_calls": calls}})
        yield Delta(index=choice.index, finish_reason=choice.finish_reason)


async def drain_while(task: asyncio.Future[Any], feed: asyncio.Queue[E]) -> AsyncIterator[E]:
    """What ``feed`` receives while ``task`` runs, as it arrives, until the task is done and the
    feed empty; the caller then reads the task's result (or error) and cancels it on exit."""
    while True:
        getter = asyncio.ensure_future(feed.get())
        try:
            await asyncio.wait({task, getter}, return_when=asyncio.FIRST_COMPLETED)
        finally:  # also when this is cancelled: no getter is left waiting on the queue
            got = getter.done()
            if not got:
                getter.cancel()
        if not got:
            break
        yield getter.result()
    while not feed.empty():
        yield feed.get_nowait()


async def cancel_now(task: asyncio.Future[Any]) -> None:
    """Cancel ``task`` if it still runs and wait until it has stopped."""
    if not task.done():
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)  # our own cancel still propagates
