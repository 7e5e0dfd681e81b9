"""The ``POST /v1/completions`` request: a raw prompt, through the same router and policies
as chat (those that work on raw text: ``single`` and ``adaptive_bon``).

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


class CompletionRequest(Strict):
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
