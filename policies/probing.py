"""Answer probes of a partial chain of thought, for the ``convergence`` policy.

A probe asks the model what its answer would be *now*: the conversation plus the partial
assistant text plus a suffix such as "... I now know the final answer. Final answer:", continued
(``continue_final_message``) for a few tokens at temperature 0. It goes to the worker holding
the request's prefix (``affinity``), so with prefix caching its prompt costs little compute.

``ProbeRunner`` launches probes as tasks without pausing the chain, bounds how many run at once
and in total, and cancels whatever is still in flight on ``cancel_all``. ``converged`` reads the
finished probes in chain order and says when the answer has settled.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import Field

from core.backend import Backend
from core.errors import TtcError
from core.profile import Thinking
from core.request import GenRequest
from core.tracing import subcall
from core.usage import TokenUsage
from policies.answers import extract_answer, hedges, normalise_answer
from policies.params import AnswerMode, Budget, PolicyParams
from policies.thinking import as_answer, closing_prefix

# Sampling fields of the client's request that make no sense for a probe: it is one greedy,
# short continuation whose text is read, never shown.
_NOT_FOR_PROBES = ("n", "logprobs", "top_logprobs", "top_p", "seed", "stream_options", "min_tokens")


class ProbeParams(PolicyParams):
    """When and how a policy probes its chain (``convergence`` extends this with its name)."""

    probe_every: int = Field(32, ge=4, le=4096)
    agree: int = Field(2, ge=1, le=16)
    probe_max_tokens: int = Field(20, ge=1, le=256)
    probe_suffix: str = "\n\n... I now know the final answer. Final answer:"
    # Only a probe's first line is read: stopping it there keeps probes a few tokens long
    # (12 hard-dev chain positions: 13.6 completion tokens per probe without it, 8.8 with it).
    probe_stop: list[str] = Field(default_factory=lambda: ["\n"], max_length=4)
    max_probes: Annotated[int, Budget("max_probes")] = Field(32, ge=1, le=512)
    answer_mode: AnswerMode = "auto"
    # 1: probes run one at a time, so they never slow the chain much on a shared CPU worker;
    # 2 lets a GPU worker check the next position while the previous probe still decodes.
    max_concurrent_probes: int = Field(1, ge=1, le=4)


@dataclass(frozen=True)
class AnswerProbe:
    """One finished probe. ``index`` is its launch order, which is chain order."""

    index: int
    at_tokens: int  # chain tokens (deltas) when it was launched
    text: str
    answer: str | None
    hedged: bool
    usage: TokenUsage
    error: str | None = None


def first_line(text: str) -> str:
    """The first non-blank line, stripped: what directly follows "Final answer:"."""
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def probe_answer(text: str, mode: str) -> str | None:
    """The answer a probe states, or None.

    Only its first non-blank line is read: the answer is what directly follows the suffix, and
    later lines are the model rambling on. ``extract_answer(line, mode)`` first; if that finds
    nothing, the normalised line itself (None when empty).
    """
    line = first_line(text)
    return extract_answer(line, mode) or normalise_answer(line) or None


def probe_messages(req: GenRequest, partial: str, suffix: str) -> list[dict[str, Any]]:
    """The conversation with the partial chain and the suffix as the final assistant message.

    When the client itself asked to continue its final assistant message, the chain continues
    that message, so the probe extends it rather than adding a new one.
    """
    messages = [dict(m) for m in req.messages]
    tail = partial.rstrip() + suffix
    last = messages[-1] if messages else {}
    continuing = req.passthrough.get("continue_final_message") and last.get("role") == "assistant"
    if continuing and isinstance(last.get("content"), str):
        messages[-1] = {**last, "content": last["content"] + tail}
    else:
        messages.append({"role": "assistant", "content": tail})
    return messages


def thinking_probe_messages(
    req: GenRequest, thought: str, thinking: Thinking
) -> list[dict[str, Any]]:
    """The conversation with the thinking so far, closed, and the profile's answer prompt as
    the final assistant message: what budget forcing would continue from at this point."""
    prefix = closing_prefix(thinking, thought, "", forced=True)
    return [*(dict(m) for m in req.messages), {"role": "assistant", "content": prefix}]


def probe_body(
    req: GenRequest, partial: str, params: ProbeParams, thinking: Thinking | None = None
) -> dict[str, Any]:
    """The upstream chat body of one probe at the chain position ``partial`` (the thinking so
    far, when ``thinking`` is the profile of a reasoning tier whose trace is being probed)."""
    dropped: dict[str, Any] = dict.fromkeys(_NOT_FOR_PROBES)
    if thinking is not None:
        messages = thinking_probe_messages(req, partial, thinking)
    else:
        messages = probe_messages(req, partial, params.probe_suffix)
    body = req.body(
        **dropped,
        messages=messages,
        continue_final_message=True,
        add_generation_prompt=False,
        max_tokens=params.probe_max_tokens,
        temperature=0.0,
    )
    client_stop = body.get("stop") or []
    stops = [client_stop] if isinstance(client_stop, str) else list(client_stop)
    stops += [s for s in params.probe_stop if s not in stops]
    if stops:
        body["stop"] = stops
    return body


def converged(in_order: Sequence[AnswerProbe], agree: int) -> AnswerProbe | None:
    """The latest probe if the last ``agree`` probes state the same answer and none hedges.

    ``in_order`` must be the finished probes in chain order with no gaps. A probe with no
    answer, or one whose text contains a hedge word ("wait", "hmm", "but", ...), breaks the run.
    """
    recent = in_order[-agree:]
    if len(recent) < agree or recent[0].answer is None:
        return None
    if any(p.answer != recent[0].answer or p.hedged for p in recent):
        return None
    return recent[-1]


class ProbeRunner:
    """Launches probes as tasks and collects them; never more than the params allow.

    ``max_concurrent_probes`` bounds the probes in flight and ``max_probes`` the probes of the
    request. The caller must ``await cancel_all()`` on every exit (it is idempotent).
    """

    def __init__(
        self,
        params: ProbeParams,
        req: GenRequest,
        tier: str,
        backend: Backend,
        thinking: Thinking | None = None,
    ) -> None:
        self._params = params
        self._thinking = thinking  # probes of a thinking trace close it (``probe_body``)
        self._req = req
        self._tier = tier
        self._backend = backend
        self._in_flight: dict[int, asyncio.Task[AnswerProbe]] = {}
        self._results: dict[int, AnswerProbe] = {}
        self.launched = 0
        self.cancelled = 0

    @property
    def can_launch(self) -> bool:
        return (
            self.launched < self._params.max_probes
            and len(self._in_flight) < self._params.max_concurrent_probes
        )

    def launch(self, partial: str, at_tokens: int) -> None:
        index = self.launched
        self.launched += 1
        name = f"probe-{self._req.request_id}-{index}"
        task = asyncio.create_task(self._probe(index, partial, at_tokens), name=name)
        self._in_flight[index] = task

    def collect(self) -> None:
        """Move finished probes to the results; re-raises a probe's unexpected error."""
        for index, task in list(self._in_flight.items()):
            if task.done():
                del self._in_flight[index]
                self._results[index] = task.result()

    def in_order(self) -> list[AnswerProbe]:
        """Finished probes in chain order, up to the first one still running."""
        out: list[AnswerProbe] = []
        while len(out) in self._results:
            out.append(self._results[len(out)])
        return out

    @property
    def results(self) -> Mapping[int, AnswerProbe]:
        return self._results

    async def cancel_all(self) -> None:
        """Cancel every probe in flight and wait for them; keep any that finished meanwhile."""
        tasks = dict(self._in_flight)
        self._in_flight.clear()
        for task in tasks.values():
            task.cancel()
        await asyncio.gather(*tasks.values(), return_exceptions=True)
        for index, task in tasks.items():
            if task.cancelled():
                self.cancelled += 1
            elif task.exception() is None:  # finished before the cancel: its tokens count
                self._results[index] = task.result()

    async def _probe(self, index: int, partial: str, at_tokens: int) -> AnswerProbe:
        body = probe_body(self._req, partial, self._params, self._thinking)
        try:
            with subcall("probe"):
                done = await self._backend.chat(self._tier, body, affinity=self._req.request_id)
        except TtcError as exc:  # a failed probe is a probe without an answer; the chain goes on
            return AnswerProbe(index, at_tokens, "", None, False, TokenUsage(), exc.code or "error")
        choice = done.choices[0] if done.choices else None
        # After a closed thinking the worker's parser still labels the continuation reasoning
        # (it sees only generated tokens): read both, and count its tokens as answer tokens.
        text = (choice.reasoning + choice.text) if choice else ""
        usage = as_answer(done.usage) if self._thinking else done.usage
        answer = probe_answer(text, self._params.answer_mode)
        return AnswerProbe(index, at_tokens, text, answer, hedges(text), usage)
