"""The ``POST /v1/completions`` request: a raw prompt, through the same router and policies
as chat (those that work on raw text: ``single`` and ``adaptive_bon``).

The prompt goes upstream as it is (vLLM's ``/v1/completions``, no chat template). The
router's features and the answer extraction read it as one user message. ``prompt`` is a
string, a list of one string, a list of token ids, or a list of one list of token ids (what
lm-evaluation-harness sends by default): several prompts in one request would be several
routed requests, and are refused with a 400 saying so. A token-id prompt goes upstream exactly
as sent (in ``passthrough``, the fields sent unchanged); the gateway has no text of it, so the
router reads an empty one and runs ``single`` (``router.shapes``), and ``echo`` is the
worker's. ``echo`` alone on a text prompt is applied by the gateway (the prompt is prepended
to each choice), so samples vote on what the model wrote; ``echo`` with ``logprobs`` or
``max_tokens: 0`` scores the prompt (what eval harnesses send for a log-likelihood): it goes
to the worker, one call (``single``), and its logprobs cover the prompt's tokens too, with
offsets into the echoed text.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, ValidationInfo, field_validator, model_validator

from server.api.common.schema import (
    MAX_TOKENS,
    SEED_MAX,
    SEED_MIN,
    VLLM_EXTRA_FIELDS,
    Bias,
    Penalty,
    StreamOptions,
    Strict,
    TokenId,
)

# A prompt as token ids: at least one, each a vocabulary index (the worker checks the bound).
TokenIds = Annotated[list[Annotated[int, Field(ge=0)]], Field(min_length=1)]
Prompt = str | list[str] | TokenIds | list[TokenIds]
ONE_PROMPT = (
    "send one prompt per request: a string, a list of one string, a list of token ids, or a "
    "list of one list of token ids"
)
TOKEN_IDS = "a token-id prompt is a non-empty list of token ids (integers from 0)"


def check_prompt_shape(v: Any) -> None:
    """One prompt, and token ids that are ids, said in words rather than as the union's
    member errors (a list of ints would otherwise be told it should be a string)."""
    if not isinstance(v, list):
        return  # a string, or the field's type error
    if not v or (len(v) != 1 and all(isinstance(x, str | list) for x in v)):
        raise ValueError(ONE_PROMPT)
    if isinstance(v[0], str):
        return
    ids = v[0] if isinstance(v[0], list) else v
    if not ids or not all(type(x) is int and x >= 0 for x in ids):
        raise ValueError(TOKEN_IDS)


class CompletionRequest(Strict):
    model: str = Field(min_length=1)
    prompt: Prompt
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

    @field_validator("suffix")
    @classmethod
    def _no_suffix(cls, v: str | None) -> str | None:
        if v:
            raise ValueError("suffix is not supported")
        return v

    @field_validator("prompt", mode="before")
    @classmethod
    def _one_prompt(cls, v: Any) -> Any:
        check_prompt_shape(v)
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
    def token_prompt(self) -> bool:
        """The prompt is token ids: the gateway has no text of it."""
        return isinstance(self.prompt, list) and not isinstance(self.prompt[0], str)

    @property
    def echoed_upstream(self) -> bool:
        """``echo`` the worker applies: when it scores the prompt, or when only it can
        detokenize the prompt (token ids)."""
        return self.echo and (self.scores_prompt or self.token_prompt)

    @property
    def text(self) -> str:
        """The prompt's text ("" for token ids: nothing for the router to read)."""
        if isinstance(self.prompt, str):
            return self.prompt
        first = self.prompt[0]
        return first if isinstance(first, str) else ""

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
        if self.token_prompt:  # as sent: its shape ([ids] or [[ids]]) is the client's
            out["prompt"] = self.prompt
        if self.echoed_upstream:
            out["echo"] = True
        return out
