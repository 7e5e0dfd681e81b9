"""``POST /v1/completions`` as an ``Endpoint``: a raw prompt, through the same router and
policies as chat (those that work on raw text: ``single`` and ``adaptive_bon``).

The prompt goes upstream as it is (vLLM's ``/v1/completions``, no chat template). The
router's features and the answer extraction read it as one user message. ``prompt`` is a
string or a list of one string: several prompts in one request would be several routed
requests, and are refused with a 400 saying so. ``echo`` alone is applied by the gateway (the
prompt is prepended to each choice), so samples vote on what the model wrote; ``echo`` with
``logprobs`` or ``max_tokens: 0`` scores the prompt (what eval harnesses send for a
log-likelihood): it goes to the worker, one call (``single``), and its logprobs cover the
prompt's tokens too, with offsets into the echoed text.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any, ClassVar

from pydantic import Field, ValidationInfo, field_validator, model_validator

from core.backend import Delta
from core.errors import TtcError
from core.progress import Progress
from core.request import Decision, GenRequest
from core.result import PolicyResult, ResultChoice
from server.body import decode
from server.endpoint import Call, Event, request_options
from server.errors import error_body
from server.openai_schema import (
    MAX_TOKENS,
    SEED_MAX,
    SEED_MIN,
    VLLM_EXTRA_FIELDS,
    Bias,
    Penalty,
    StreamOptions,
    TokenId,
    _Strict,
)
from server.responses import ttc_body, usage_body
from server.streaming import DONE, KEEPALIVE, sse


class CompletionRequest(_Strict):
    model: str = Field(min_length=1)
    prompt: str | list[str]
    suffix: str | None = None
    echo: bool = False  # before max_tokens: its validator reads it
    max_tokens: Annotated[int | None, Field(ge=0, le=MAX_TOKENS)] = None  # 0: echo only
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    n: int | None = Field(None, ge=1, le=128)
    stop: str | list[str] | None = None
    seed: int | None = Field(None, ge=SEED_MIN, le=SEED_MAX)
    logprobs: int | None = Field(None, ge=0, le=20)
    stream: bool = False
    stream_options: StreamOptions | None = None
    presence_penalty: Penalty = None
    frequency_penalty: Penalty = None
    logit_bias: dict[TokenId, Bias] | None = None
    best_of: int | None = Field(None, ge=1, le=1)
    user: str | None = None
    ttc: dict[str, Any] | None = None

    @field_validator("prompt", mode="before")
    @classmethod
    def _text_prompt(cls, v: Any) -> Any:
        ids = isinstance(v, list) and v and all(isinstance(x, int | list) for x in v)
        if ids and not any(isinstance(x, bool) for x in v):
            raise ValueError("token-id prompts are not supported: send the prompt as text")
        return v

    @field_validator("suffix")
    @classmethod
    def _no_suffix(cls, v: str | None) -> str | None:
        if v:
            raise ValueError("suffix is not supported")
        return v

    @field_validator("prompt")
    @classmethod
    def _one_prompt(cls, v: str | list[str]) -> str | list[str]:
        if isinstance(v, list) and len(v) != 1:
            raise ValueError("send one prompt per request (a list holds exactly one string)")
        return v

    @field_validator("max_tokens")
    @classmethod
    def _nothing_only_echoed(cls, v: int | None, info: ValidationInfo) -> int | None:
        if v == 0 and not info.data.get("echo"):
            raise ValueError("max_tokens 0 generates nothing: it needs 'echo' (scoring the prompt)")
        return v

    @model_validator(mode="after")
    def _known_extras(self) -> CompletionRequest:
        for key in self.model_extra or {}:
            if key not in VLLM_EXTRA_FIELDS - {"echo"}:
                raise ValueError(f"Unrecognized request argument supplied: {key}")
        return self

    @property
    def scores_prompt(self) -> bool:
        """Echo with logprobs (or nothing generated): the worker echoes and scores the prompt."""
        return self.echo and (self.logprobs is not None or self.max_tokens == 0)

    @property
    def text(self) -> str:
        return self.prompt if isinstance(self.prompt, str) else self.prompt[0]

    def sampling(self) -> dict[str, Any]:
        fields = ("max_tokens", "temperature", "top_p", "n", "stop", "seed")
        out = {k: getattr(self, k) for k in fields if getattr(self, k) is not None}
        if self.logprobs is not None:  # the policies speak chat's form; the client maps back
            out["logprobs"], out["top_logprobs"] = True, self.logprobs
        return out

    def passthrough(self) -> dict[str, Any]:
        out = dict(self.model_extra or {})
        for key in ("presence_penalty", "frequency_penalty", "logit_bias", "user"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.scores_prompt:
            out["echo"] = True
        return out


class CompletionsEndpoint:
    name: ClassVar[str] = "completions"
    id_prefix: ClassVar[str] = "cmpl-"

    async def parse(self, raw: bytes, request_id: str, deadline: float, owner: str) -> Call:
        body = await decode(raw, CompletionRequest)
        options = request_options(body.ttc)
        req = GenRequest(
            messages=({"role": "user", "content": body.text},),
            sampling=body.sampling(),
            passthrough=body.passthrough(),
            model=body.model,
            ttc=options.ttc,
            request_id=request_id,
            deadline=deadline,
            body_bytes=len(raw),
            prompt=body.text,
        )
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return Call(req, stream=body.stream, include_usage=include_usage, cache=options.cache,
                    owner=owner, wire=body)  # fmt: skip

    async def render(self, call: Call, decision: Decision, result: PolicyResult) -> dict[str, Any]:
        body = _base(call, decision)
        body["choices"] = [_choice(call, c) for c in result.choices]
        body["usage"] = usage_body(result.usage, result.report)
        body["ttc"] = ttc_body(decision, result.report)
        return body

    def render_stream(
        self, call: Call, decision: Decision, events: AsyncIterator[Event | None]
    ) -> AsyncIterator[bytes]:
        return _completion_sse(call, decision, events)


def _wire(call: Call) -> CompletionRequest:
    assert isinstance(call.wire, CompletionRequest)
    return call.wire


def _echoed_here(call: Call) -> bool:
    """``echo`` the gateway applies (the worker's, when it scores the prompt, is in its text)."""
    return _wire(call).echo and not _wire(call).scores_prompt


def _base(call: Call, decision: Decision) -> dict[str, Any]:
    return {"id": call.req.request_id, "object": "text_completion",
            "created": int(call.created), "model": decision.tier}  # fmt: skip


def _choice(call: Call, choice: ResultChoice) -> dict[str, Any]:
    echo = _wire(call).text if _echoed_here(call) else ""
    return {"index": choice.index, "text": echo + choice.text, "logprobs": choice.logprobs,
            "finish_reason": choice.finish_reason}  # fmt: skip


async def _completion_sse(
    call: Call, decision: Decision, events: AsyncIterator[Event | None]
) -> AsyncIterator[bytes]:
    """Text-completion chunks, the last one held back so ``ttc`` rides on it; with
    ``include_usage`` one more chunk with empty ``choices`` and the usage (as OpenAI sends it);
    then ``[DONE]``. A policy's ``Progress`` is ``ttc.progress`` on an empty piece of choice 0
    (as in chat: ``choices[0]`` of every chunk is there); an error mid-stream is an error
    event, then ``[DONE]``."""
    chunks = _TextChunks(call, decision)
    try:
        async for event in events:
            if event is None:
                yield KEEPALIVE
            elif isinstance(event, Progress):
                yield chunks.progress(event)
            elif isinstance(event, Delta):
                yield chunks.delta(event)
            else:
                yield chunks.result(event)
        yield chunks.flush()
    except TtcError as exc:
        yield chunks.flush() + sse(error_body(exc))
    yield DONE


class _TextChunks:
    """The chunks of one text-completion stream; the latest is held until the next comes."""

    def __init__(self, call: Call, decision: Decision) -> None:
        self.call, self.decision = call, decision
        self.echoed: set[int] = set()
        self.held: dict[str, Any] | None = None

    def flush(self) -> bytes:
        held, self.held = self.held, None
        return sse(held) if held is not None else b""

    def progress(self, event: Progress) -> bytes:
        empty = {"index": 0, "text": "", "logprobs": None, "finish_reason": None}
        chunk = {**_base(self.call, self.decision), "choices": [empty],
                 "ttc": {"progress": event.body()}}  # fmt: skip
        return self.flush() + sse(chunk)

    def delta(self, event: Delta) -> bytes:
        text = event.text
        if _echoed_here(self.call) and event.index not in self.echoed:
            self.echoed.add(event.index)
            text = _wire(self.call).text + text
        if not (text or event.finish_reason):
            return b""
        out = self.flush()
        self.held = _chunk(self.call, self.decision, event, text)
        return out

    def result(self, event: PolicyResult) -> bytes:
        base = _base(self.call, self.decision)
        last = self.held if self.held is not None else {**base, "choices": []}
        self.held = None
        report = ttc_body(self.decision, event.report)
        out = sse({**last, "ttc": report})
        if self.call.include_usage:  # the report again beside the usage, as chat has it
            usage = usage_body(event.usage, event.report)
            out += sse({**base, "choices": [], "usage": usage, "ttc": report})
        return out


def _chunk(call: Call, decision: Decision, delta: Delta, text: str) -> dict[str, Any]:
    logprobs = delta.raw.get("logprobs") if delta.raw else None
    choice = {"index": delta.index, "text": text, "logprobs": logprobs,
              "finish_reason": delta.finish_reason}  # fmt: skip
    return {**_base(call, decision), "choices": [choice]}
