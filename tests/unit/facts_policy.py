"""A policy added the documented way (one module, one line in the registry) whose facts differ
from every default of ``policies.facts.Facts``, for test_policy_facts: the router, load
scaling, reservations and tool routing must act on these facts, never on policy names."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import ClassVar, Literal

from core.backend import Backend
from core.request import Decision, GenRequest
from core.result import PolicyResult, ResultChoice
from core.usage import UsageLedger
from policies.base import PolicyEvent, Registration, stream_whole
from policies.facts import Facts
from policies.params import PolicyParams
from policies.worst_case import Shape

# 4,321: a bound no built-in policy gives for the test's request, so the reservation can be
# seen to use it.
BOUND = 4_321


class OddParams(PolicyParams):
    name: Literal["odd"] = "odd"


class OddPolicy:
    name: ClassVar[str] = "odd"

    def __init__(self, params: OddParams) -> None:
        self.params = params

    async def run(self, req: GenRequest, decision: Decision, backend: Backend) -> PolicyResult:
        choice = ResultChoice(index=0, text="odd", finish_reason="stop")
        return PolicyResult(choices=(choice,), usage=UsageLedger(), report={})

    def stream(
        self, req: GenRequest, decision: Decision, backend: Backend
    ) -> AsyncIterator[PolicyEvent]:
        return stream_whole(self, req, decision, backend)


def worst_case(params: OddParams, shape: Shape) -> int:
    return BOUND


REGISTRATION = Registration(
    OddParams,
    OddPolicy,
    Facts(
        worst_case=worst_case,
        text_prompts=True,  # default False
        one_answer=True,  # default False
        votes=True,  # default False
        logprobs=False,  # default True
        tool_votes=True,  # default False
        shed_under_load=True,  # default False
        needs=frozenset({"top_logprobs"}),  # default: nothing
        shapes=frozenset({"open"}),  # default: both
    ),
)
