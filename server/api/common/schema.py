"""Request pieces every API validates the same way: strict JSON types, vLLM's extras, limits.

Requests are validated strictly, as OpenAI validates them: JSON types (pydantic strict mode: a
string is never a number, a boolean never an integer; an integer is a valid float) and ranges.
Unknown fields are refused unless vLLM's OpenAI server understands them (``VLLM_EXTRA_FIELDS``,
forwarded unchanged), so nothing a client sends is dropped silently.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

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

# 2**31 - 1: token counts are int32 upstream; 10**30 is not a token count but a bug.
MAX_TOKENS = 2**31 - 1
# seed: a signed 64-bit integer, as OpenAI and vLLM take it.
SEED_MIN, SEED_MAX = -(2**63), 2**63 - 1


class Strict(BaseModel):
    """Strict JSON types; fields beyond the declared ones are kept and forwarded."""

    model_config = ConfigDict(extra="allow", strict=True)


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    include_usage: bool = False
    include_obfuscation: bool | None = None  # no obfuscation padding is ever added


TokenId = Annotated[str, Field(pattern=r"^\d+$")]
Bias = Annotated[float, Field(ge=-100.0, le=100.0)]
Penalty = Annotated[float | None, Field(ge=-2.0, le=2.0)]
TokenCount = Annotated[int | None, Field(ge=1, le=MAX_TOKENS)]
