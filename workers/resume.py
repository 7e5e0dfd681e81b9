"""A stream that survives its worker: resumed on another worker from what was already sent.

Before any output a failed stream is simply retried elsewhere (``workers.streams``). After
output, the client holds part of the answer; the pool can still finish it on another worker of
the tier by *continuing the final message* with that part (``continue_final_message``): the
same prompt plus an assistant message holding the text already streamed, so the new worker
picks up where the dead one stopped. The client sees one stream: the second call's role chunk
is dropped, its deltas follow the first's, and its usage comes out added to what the first
call cost (both calls are billed: the second read the prompt and the prefix again).

Which streams resume: one choice, text (and thinking: the prefix is the thinking so far, opened
with the profile's start delimiter and, once the answer began, closed before it, so the
continuation goes on inside the thinking or the answer where the first stopped), on a tier
whose engine continues a final message. Streams with ``n`` > 1, logprobs, or tool-call deltas
keep the error they had (``StreamInterrupted``): a prefix cannot carry them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from core.backend import Delta
from core.contract import prompt_estimate
from core.metering import StreamProgress
from core.profile import Thinking
from core.usage import TokenUsage
from workers.engines import Engine
from workers.engines.base import CONTINUE
from workers.fanout import samples
from workers.streams import is_output
from workers.worker import Worker

# Fields of a body whose streams cannot resume: what they ask for cannot be put in a prefix.
_UNRESUMABLE = ("logprobs", "tools", "functions")


def resumable(engine: Engine, body: Mapping[str, Any]) -> bool:
    """Can a stream of ``body`` on ``engine`` be continued on another worker?"""
    if not engine.can(CONTINUE) or not isinstance(body.get("messages"), list):
        return False
    return samples(body) == 1 and not any(body.get(name) for name in _UNRESUMABLE)


@dataclass
class Resumption:
    """What one stream has sent so far, and the body that continues it."""

    body: dict[str, Any]
    thinking: Thinking | None
    texts: list[str] = field(default_factory=list)  # joined only to resume: no copy per delta
    reasonings: list[str] = field(default_factory=list)
    spent: TokenUsage = field(default_factory=TokenUsage)  # calls that ended before this one
    resumed: int = 0  # times continued on another worker
    possible: bool = True  # no tool-call or logprob delta so far

    def relay(self, delta: Delta) -> Delta | None:
        """The delta as the client should see it (None: dropped): a resumed call's role chunk
        goes, its usage comes with the earlier calls' added."""
        if delta.usage is not None:
            return dataclasses.replace(delta, usage=self.spent + delta.usage)
        if self.resumed and not is_output(delta):
            return None
        if self.possible:
            self._note(delta)
        return delta

    def _note(self, delta: Delta) -> None:
        self.texts.append(delta.text)
        self.reasonings.append(delta.reasoning)
        inner = delta.raw.get("delta") or {}
        if inner.get("tool_calls") or delta.raw.get("logprobs"):
            self.possible = False

    def resume(self, seen: StreamProgress) -> bool:
        """After a call that failed having cost what ``seen`` saw: ready the body that
        continues the stream on another worker; False when it cannot be continued."""
        if not self.possible or not any(self.texts + self.reasonings):
            return False
        spent = seen.usage_so_far()
        if seen.usage is None:  # it died before reporting: its prompt is estimated
            spent += TokenUsage(prompt_estimate(self.continuing()), 0)
        left = _tokens_left(self.body, self.spent + spent)
        if left is not None and left <= 0:
            return False
        self.spent += spent
        self.resumed += 1
        return True

    def continuing(self) -> dict[str, Any]:
        """The body of the next call: the original until a failure, then its continuation."""
        if not self.resumed:
            return self.body
        messages = [dict(m) for m in self.body["messages"]]
        prefix = self._prefix()
        last = messages[-1] if messages else {}
        if self.body.get("continue_final_message") and last.get("role") == "assistant":
            last["content"] = str(last.get("content") or "") + prefix
        else:
            messages.append({"role": "assistant", "content": prefix})
        out = {**self.body, "messages": messages}
        out.update(continue_final_message=True, add_generation_prompt=False)
        left = _tokens_left(self.body, self.spent)
        if left is not None:
            out.pop("max_completion_tokens", None)
            out["max_tokens"] = left
        return out

    def _prefix(self) -> str:
        text, reasoning = "".join(self.texts), "".join(self.reasonings)
        if not reasoning or self.thinking is None:
            return text
        # As policies.thinking writes it: the parsers drop the newline after the start.
        opened = f"{self.thinking.start}\n{reasoning.lstrip(chr(10))}"
        return opened + self.thinking.end + text if text else opened


def _tokens_left(body: Mapping[str, Any], spent: TokenUsage) -> int | None:
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    return None if not isinstance(limit, int) else limit - spent.completion_tokens


async def relayed(
    deltas: AsyncIterator[Delta], sent: Resumption, worker: Worker, clock: Callable[[], float]
) -> AsyncGenerator[Delta, None]:
    """A call's deltas as the client sees them (``Resumption.relay``), noting the worker's
    progress as they arrive."""
    async for delta in deltas:
        worker.last_progress = clock()
        out = sent.relay(delta)
        if out is not None:
            yield out
