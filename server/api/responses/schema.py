"""Pydantic models of the ``POST /v1/responses`` request (OpenAI's Responses API).

Validated strictly: JSON types as OpenAI documents them (a string is never a number), ranges,
and unknown fields refused with a 400 naming them. What the gateway cannot honour is refused
the same way rather than ignored: built-in tools (web search, file search, ...), non-text
input parts (images, files), ``background``. Everything accepted reaches the model or is
echoed on the stored response.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    Tag,
    ValidationInfo,
    field_validator,
    model_validator,
)

from core.profile import ClientEffort

Number = StrictFloat | StrictInt


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TextPart(_Strict):
    """A text content part; ``output_text`` parts come back when a client replays our output."""

    type: Literal["input_text", "output_text", "text", "refusal"]
    text: StrictStr = ""
    refusal: StrictStr | None = None
    annotations: list[Any] | None = None
    logprobs: list[Any] | None = None
    prompt_cache_breakpoint: dict[str, Any] | None = None  # vLLM caches every prefix anyway


class MessageItem(_Strict):
    type: Literal["message"] = "message"
    role: Literal["user", "system", "developer", "assistant"]
    content: StrictStr | list[TextPart]
    id: StrictStr | None = None
    status: StrictStr | None = None
    phase: StrictStr | None = None

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text or part.refusal or "" for part in self.content)


class FunctionCallItem(_Strict):
    type: Literal["function_call"]
    call_id: StrictStr
    name: StrictStr
    arguments: StrictStr
    id: StrictStr | None = None
    status: StrictStr | None = None
    namespace: StrictStr | None = None
    caller: dict[str, Any] | None = None


class FunctionCallOutputItem(_Strict):
    type: Literal["function_call_output"]
    call_id: StrictStr
    output: StrictStr | list[TextPart]
    id: StrictStr | None = None
    status: StrictStr | None = None
    name: StrictStr | None = None
    namespace: StrictStr | None = None
    caller: dict[str, Any] | None = None

    def text(self) -> str:
        if isinstance(self.output, str):
            return self.output
        return "".join(part.text for part in self.output)


class ReasoningItem(BaseModel):
    """A reasoning item replayed from an earlier response: accepted, not sent to the model
    (as OpenAI does for models that do not take their own thinking back)."""

    model_config = ConfigDict(extra="allow")
    type: Literal["reasoning"]


# Tags are the class names, which error paths leave out (``input.0.role``, as for any union).
_ITEM_CLASSES = {
    "message": "MessageItem",
    "function_call": "FunctionCallItem",
    "function_call_output": "FunctionCallOutputItem",
    "reasoning": "ReasoningItem",
}


def _item_kind(value: Any) -> str | None:
    kind = value.get("type", "message") if isinstance(value, dict) else getattr(value, "type", None)
    return _ITEM_CLASSES.get(kind) if isinstance(kind, str) else None


InputItem = Annotated[
    Annotated[MessageItem, Tag("MessageItem")]
    | Annotated[FunctionCallItem, Tag("FunctionCallItem")]
    | Annotated[FunctionCallOutputItem, Tag("FunctionCallOutputItem")]
    | Annotated[ReasoningItem, Tag("ReasoningItem")],
    Discriminator(
        _item_kind,
        custom_error_type="invalid_item",
        custom_error_message="an input item's 'type' must be one of: " + ", ".join(_ITEM_CLASSES),
    ),
]


class FunctionTool(_Strict):
    type: Literal["function"]
    name: StrictStr = Field(min_length=1, max_length=64)
    description: StrictStr | None = None
    parameters: dict[str, Any] | None = None
    strict: StrictBool | None = None

    def chat(self) -> dict[str, Any]:
        function: dict[str, Any] = {"name": self.name}
        for key in ("description", "parameters", "strict"):
            if getattr(self, key) is not None:
                function[key] = getattr(self, key)
        return {"type": "function", "function": function}


class NamedFunction(_Strict):
    type: Literal["function"]
    name: StrictStr


class TextFormat(_Strict):
    type: Literal["text", "json_object", "json_schema"]
    name: StrictStr | None = None
    schema_: dict[str, Any] | None = Field(None, alias="schema")
    description: StrictStr | None = None
    strict: StrictBool | None = None

    @model_validator(mode="after")
    def _schema_present(self) -> TextFormat:
        if self.type == "json_schema" and (self.schema_ is None or not self.name):
            raise ValueError("a json_schema format needs 'name' and 'schema'")
        return self


class TextConfig(_Strict):
    format: TextFormat | None = None
    verbosity: Literal["low", "medium", "high"] | None = None


class ReasoningConfig(_Strict):
    effort: ClientEffort | None = None
    summary: Literal["auto", "concise", "detailed"] | None = None


class StreamOptions(_Strict):
    include_obfuscation: StrictBool | None = None  # no obfuscation padding is ever added


class ResponsesRequest(_Strict):
    model: StrictStr = Field(min_length=1)
    input: StrictStr | list[InputItem]
    instructions: StrictStr | None = None
    max_output_tokens: StrictInt | None = Field(None, ge=1, le=1_000_000)
    temperature: Number | None = Field(None, ge=0.0, le=2.0)
    top_p: Number | None = Field(None, gt=0.0, le=1.0)
    reasoning: ReasoningConfig | None = None
    text: TextConfig | None = None
    tools: list[FunctionTool] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedFunction | None = None
    parallel_tool_calls: StrictBool | None = None
    metadata: dict[StrictStr, StrictStr] | None = Field(None, max_length=16)
    user: StrictStr | None = None
    store: StrictBool = True
    previous_response_id: StrictStr | None = None
    stream: StrictBool = False
    background: StrictBool | None = None
    truncation: Literal["disabled"] | None = None
    # Accepted and echoed, with nothing to do here: ``max_tool_calls`` bounds built-in tool
    # calls (OpenAI's own tools; function calls are the client's to run), reasoning comes back
    # in clear (no encrypted content), vLLM caches every prompt prefix, and the ids are the
    # caller's to log.
    max_tool_calls: StrictInt | None = Field(None, ge=1)
    include: list[Literal["reasoning.encrypted_content"]] | None = None
    prompt_cache_key: StrictStr | None = None
    safety_identifier: StrictStr | None = None
    service_tier: Literal["auto", "default"] | None = None
    stream_options: StreamOptions | None = None
    ttc: dict[str, Any] | None = None

    @field_validator("input")
    @classmethod
    def _some_input(cls, value: Any) -> Any:
        if isinstance(value, list) and not value:
            raise ValueError("'input' must not be empty")
        return value

    @field_validator("background")
    @classmethod
    def _foreground(cls, value: bool | None) -> bool | None:
        if value:
            raise ValueError("background responses are not supported by this gateway")
        return value

    @field_validator("tool_choice")
    @classmethod
    def _choice_has_tools(cls, value: Any, info: ValidationInfo) -> Any:
        if value == "required" and not info.data.get("tools"):
            raise ValueError("tool_choice 'required' needs 'tools'")
        if isinstance(value, NamedFunction):
            names = {tool.name for tool in info.data.get("tools") or []}
            if value.name not in names:
                raise ValueError(f"tool_choice names '{value.name}', not in 'tools'")
        return value

    @field_validator("stream_options")
    @classmethod
    def _options_stream(cls, value: Any, info: ValidationInfo) -> Any:
        if value is not None and not info.data.get("stream"):
            raise ValueError("stream_options is only allowed when 'stream' is true")
        return value
