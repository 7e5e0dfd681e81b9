"""Pydantic models of the OpenAI chat request, and the wire shape of responses.

Requests are validated strictly: ranges as OpenAI documents them, and unknown fields are
refused unless vLLM's OpenAI server understands them (``VLLM_EXTRA_FIELDS``), so nothing a
client sends is dropped silently. Responses are built as plain dicts (the hot path).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# Sampling extras vLLM accepts beyond the OpenAI schema; passed through unchanged.
VLLM_EXTRA_FIELDS = frozenset(
    {
        "top_k",
        "min_p",
        "repetition_penalty",
        "length_penalty",
        "min_tokens",
        "ignore_eos",
        "skip_special_tokens",
        "spaces_between_special_tokens",
        "stop_token_ids",
        "include_stop_str_in_output",
        "truncate_prompt_tokens",
        "chat_template_kwargs",
        "guided_json",
        "guided_regex",
        "guided_choice",
        "guided_grammar",
        "structured_outputs",
        "echo",
        "add_generation_prompt",
        "continue_final_message",
        "priority",
    }
)

# OpenAI fields forwarded to vLLM as they are.
OPENAI_PASSTHROUGH = frozenset(
    {
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "response_format",
        "logit_bias",
        "presence_penalty",
        "frequency_penalty",
        "user",
        "metadata",
        "store",
    }
)

SAMPLING_FIELDS = (
    "temperature",
    "top_p",
    "n",
    "max_tokens",
    "stop",
    "seed",
    "logprobs",
    "top_logprobs",
)


class Message(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None

    @model_validator(mode="after")
    def _has_content(self) -> Message:
        if self.content is None and self.role != "assistant":
            raise ValueError(f"a '{self.role}' message needs 'content'")
        if self.content is None and not self.tool_calls:
            raise ValueError("an assistant message needs 'content' or 'tool_calls'")
        return self


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1)
    messages: list[Message] = Field(min_length=1)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    n: int | None = Field(None, ge=1, le=128)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = Field(None, ge=0, le=20)
    stream: bool = False
    stream_options: StreamOptions | None = None
    presence_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    frequency_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    reasoning_effort: Literal["low", "medium", "high"] | None = None
    ttc: dict[str, Any] | None = None

    @field_validator("stop")
    @classmethod
    def _stop_list(cls, v: str | list[str] | None) -> str | list[str] | None:
        if isinstance(v, list) and len(v) > 4:
            raise ValueError("at most 4 stop sequences")
        return v

    @model_validator(mode="after")
    def _known_extras(self) -> ChatCompletionRequest:
        allowed = VLLM_EXTRA_FIELDS | OPENAI_PASSTHROUGH
        for key in self.model_extra or {}:
            if key not in allowed:
                raise ValueError(f"Unrecognized request argument supplied: {key}")
        if self.top_logprobs and not self.logprobs:
            raise ValueError("top_logprobs needs logprobs: true")
        return self

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)

    def sampling(self) -> dict[str, Any]:
        """The sampling fields the client set; ``max_completion_tokens`` maps to max_tokens."""
        out = {k: getattr(self, k) for k in SAMPLING_FIELDS if getattr(self, k) is not None}
        if self.max_completion_tokens is not None:
            out["max_tokens"] = self.max_completion_tokens
        return out

    def passthrough(self) -> dict[str, Any]:
        out = dict((self.model_extra or {}).items())
        for key in ("presence_penalty", "frequency_penalty"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        return out

    def wire_messages(self) -> tuple[dict[str, Any], ...]:
        return tuple(m.model_dump(exclude_none=True) for m in self.messages)
