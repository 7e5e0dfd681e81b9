"""Pydantic models of the OpenAI chat request, and the wire shape of responses.

Requests are validated strictly, as OpenAI validates them: JSON types (pydantic strict mode: a
string is never a number, a boolean never an integer; an integer is a valid float), ranges, and
the shapes of the OpenAI fields forwarded to vLLM (``tools``, ``tool_choice``,
``response_format``, ``logit_bias``, ...). Unknown fields are refused unless vLLM's OpenAI
server understands them (``VLLM_EXTRA_FIELDS``, forwarded unchanged), so nothing a client sends
is dropped silently. Responses are built as plain dicts (the hot path).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from core.profile import ClientEffort
from server.api.common.schema import (
    SEED_MAX,
    SEED_MIN,
    VLLM_EXTRA_FIELDS,
    Bias,
    Penalty,
    StreamOptions,
    Strict,
    TokenCount,
    TokenId,
)

# OpenAI fields validated here and forwarded to vLLM as the client sent them.
OPENAI_PASSTHROUGH = (
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


class ContentPart(Strict):
    type: str = Field(min_length=1)
    text: str | None = None

    @model_validator(mode="after")
    def _text_has_text(self) -> ContentPart:
        if self.type == "text" and self.text is None:
            raise ValueError("a 'text' content part needs 'text'")
        return self


class Message(Strict):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[ContentPart] | None = None
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


class FunctionDefinition(Strict):
    name: str = Field(min_length=1)
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class Tool(Strict):
    type: Literal["function"]
    function: FunctionDefinition | None = None


class FunctionName(Strict):
    name: str = Field(min_length=1)


class NamedToolChoice(Strict):
    type: Literal["function"]
    function: FunctionName


class JsonSchemaFormat(Strict):
    name: str = Field(min_length=1)
    description: str | None = None
    schema_: dict[str, Any] | None = Field(None, alias="schema")
    strict: bool | None = None


class ResponseFormat(Strict):
    type: Literal["text", "json_object", "json_schema", "structural_tag"]
    json_schema: JsonSchemaFormat | None = None


class ChatCompletionRequest(Strict):
    model: str = Field(min_length=1)
    messages: list[Message] = Field(min_length=1)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    n: int | None = Field(None, ge=1, le=128)
    max_tokens: TokenCount = None
    max_completion_tokens: TokenCount = None
    stop: str | list[str] | None = None
    seed: int | None = Field(None, ge=SEED_MIN, le=SEED_MAX)
    logprobs: bool | None = None
    top_logprobs: int | None = Field(None, ge=0, le=20)
    stream: bool = False
    stream_options: StreamOptions | None = None
    reasoning_effort: ClientEffort | None = None
    ttc: dict[str, Any] | None = None
    # OPENAI_PASSTHROUGH: validated to their OpenAI shapes, forwarded as sent.
    tools: list[Tool] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None
    logit_bias: dict[TokenId, Bias] | None = None
    presence_penalty: Penalty = None
    frequency_penalty: Penalty = None
    user: str | None = None
    metadata: dict[str, str] | None = Field(None, max_length=16)
    store: bool | None = None

    @field_validator("stop")
    @classmethod
    def _stop_list(cls, v: str | list[str] | None) -> str | list[str] | None:
        if isinstance(v, list) and len(v) > 4:
            raise ValueError("at most 4 stop sequences")
        return v

    @model_validator(mode="after")
    def _known_extras(self) -> ChatCompletionRequest:
        for key in self.model_extra or {}:
            if key not in VLLM_EXTRA_FIELDS:
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
        """The vLLM extras and the OpenAI pass-through fields the client set, as it sent them."""
        out = dict((self.model_extra or {}).items())
        for key in OPENAI_PASSTHROUGH:
            value = getattr(self, key)
            if value is not None:
                out[key] = _wire(value)
        return out

    def wire_messages(self) -> tuple[dict[str, Any], ...]:
        return tuple(m.model_dump(exclude_none=True) for m in self.messages)


def _wire(value: Any) -> Any:
    """A validated pass-through value back in its wire form (only the keys the client sent)."""
    if isinstance(value, BaseModel):
        return value.model_dump(by_alias=True, exclude_unset=True)
    if isinstance(value, list):
        return [_wire(v) for v in value]
    return value
