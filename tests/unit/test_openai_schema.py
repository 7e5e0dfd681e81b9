from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from server.api.chat.schema import ChatCompletionRequest
from server.errors import from_validation_error

MSG = [{"role": "user", "content": "hi"}]


def param_of(body: dict[str, Any]) -> str | None:
    with pytest.raises(ValidationError) as info:
        ChatCompletionRequest.model_validate(body)
    return from_validation_error(info.value).param


def test_max_completion_tokens_maps_to_max_tokens() -> None:
    req = ChatCompletionRequest.model_validate(
        {"model": "auto", "messages": MSG, "max_completion_tokens": 7, "temperature": 0}
    )
    assert req.sampling() == {"max_tokens": 7, "temperature": 0}


def test_vllm_extras_pass_through_and_unknown_fields_are_refused() -> None:
    req = ChatCompletionRequest.model_validate(
        {"model": "a", "messages": MSG, "top_k": 5, "tools": [{"type": "function"}]}
    )
    assert req.passthrough() == {"top_k": 5, "tools": [{"type": "function"}]}
    with pytest.raises(ValidationError, match="Unrecognized request argument supplied: foo"):
        ChatCompletionRequest.model_validate({"model": "a", "messages": MSG, "foo": 1})


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"temperature": -0.1}, "temperature"),
        ({"n": 129}, "n"),
        ({"top_logprobs": 21}, "top_logprobs"),
        ({"messages": [{"role": "user"}]}, "messages.0"),
    ],
)
def test_ranges(extra: dict[str, Any], param: str) -> None:
    assert param_of({"model": "a", "messages": MSG, **extra}) == param


def test_assistant_message_may_carry_only_tool_calls() -> None:
    calls = [{"id": "1", "type": "function"}]
    msgs = [*MSG, {"role": "assistant", "tool_calls": calls}]
    req = ChatCompletionRequest.model_validate({"model": "a", "messages": msgs})
    assert req.wire_messages()[1] == {"role": "assistant", "tool_calls": calls}
