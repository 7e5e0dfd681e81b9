"""``single``: one upstream call, passed straight through (``n`` choices when asked)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, ClassVar, Literal

from core.backend import Backend, Choice, Delta, close_now
from core.request import Decision, GenRequest
from core.result import PolicyResult, ResultChoice
from core.usage import UsageLedger
from policies import worst_case
from policies.base import Registration
from policies.facts import Facts
from policies.params import PolicyParams


class SingleParams(PolicyParams):
    """One sample, streamed straight through."""

    name: Literal["single"] = "single"


def result_choice(choice: Choice) -> ResultChoice:
    message = choice.raw.get("message") or {}
    return ResultChoice(
        index=choice.index,
        text=choice.text,
        finish_reason=choice.finish_reason or "stop",
        logprobs=choice.raw.get("logprobs"),
        tool_calls=tuple(message.get("tool_calls") or ()),
        reasoning=choice.reasoning,
    )


class SinglePolicy:
    name: ClassVar[str] = "single"

    def __init__(self, params: SingleParams) -> None:
        self.params = params

    async def run(self, req: GenRequest, decision: Decision, backend: Backend) -> PolicyResult:
        completion = await backend.chat(decision.tier, req.body(), affinity=req.request_id)
        ledger = UsageLedger()
        ledger.add("sample", decision.tier, completion.usage)
        return PolicyResult(
            choices=tuple(result_choice(c) for c in completion.choices),
            usage=ledger,
            report=_report(len(completion.choices)),
        )

    async def stream(
        self, req: GenRequest, decision: Decision, backend: Backend
    ) -> AsyncIterator[Delta | PolicyResult]:
        ledger = UsageLedger()
        texts: dict[int, list[str]] = {}
        thoughts: dict[int, list[str]] = {}
        finish: dict[int, str] = {}
        upstream = backend.stream_chat(decision.tier, req.body(), affinity=req.request_id)
        try:
            async for delta in upstream:
                if delta.usage is not None:
                    ledger.add("sample", decision.tier, delta.usage)
                    continue
                texts.setdefault(delta.index, []).append(delta.text)
                thoughts.setdefault(delta.index, []).append(delta.reasoning)
                if delta.finish_reason:
                    finish[delta.index] = delta.finish_reason
                yield delta
        finally:
            await close_now(upstream)  # now, not when garbage-collected: vLLM aborts it
        choices = tuple(
            ResultChoice(
                index=i,
                text="".join(parts),
                finish_reason=finish.get(i, "stop"),
                reasoning="".join(thoughts.get(i, ())),
            )
            for i, parts in sorted(texts.items())
        )
        yield PolicyResult(choices=choices, usage=ledger, report=_report(len(choices)))


def _report(samples: int) -> dict[str, Any]:
    return {"samples": samples, "early_stopped": False}


REGISTRATION = Registration(
    SingleParams,
    SinglePolicy,
    Facts(worst_case=worst_case.single, plain=True, text_prompts=True),
)
