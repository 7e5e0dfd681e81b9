"""A policy added the documented way (one module, one registration), for test_policy_budgets."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, ClassVar, Literal

from pydantic import Field

from core.backend import Backend
from core.request import Decision, GenRequest
from core.result import PolicyResult, ResultChoice
from core.usage import UsageLedger
from policies.base import PolicyEvent, Registration, stream_whole
from policies.facts import Facts
from policies.params import Budget, PolicyParams
from policies.worst_case import Shape


class EchoParams(PolicyParams):
    name: Literal["echo"] = "echo"
    repeats: Annotated[int, Budget("max_samples")] = Field(2, ge=1, le=64)


class EchoPolicy:
    name: ClassVar[str] = "echo"

    def __init__(self, params: EchoParams) -> None:
        self.params = params

    async def run(self, req: GenRequest, decision: Decision, backend: Backend) -> PolicyResult:
        text = (req.question or "") * self.params.repeats
        choice = ResultChoice(index=0, text=text, finish_reason="stop")
        return PolicyResult(choices=(choice,), usage=UsageLedger(), report={})

    def stream(
        self, req: GenRequest, decision: Decision, backend: Backend
    ) -> AsyncIterator[PolicyEvent]:
        return stream_whole(self, req, decision, backend)


def worst_case(params: EchoParams, shape: Shape) -> int:
    """No upstream call: nothing to reserve."""
    return 0


REGISTRATION = Registration(EchoParams, EchoPolicy, Facts(worst_case=worst_case))
