"""Model profile presets by family, and the worker flags a profile implies.

``PRESETS`` names what the GPU config and the bundled models use; a tier's config picks one by
name (``profile: qwen3``) or spells out its own. ``worker_args`` is the single source of the
vLLM flags a profile needs, used by every worker the project launches or deploys.
"""

from __future__ import annotations

from core.profile import PLAIN, ModelProfile, Thinking
from workers.thinking_model import THINK_OPENING

PRESETS: dict[str, ModelProfile] = {
    "plain": PLAIN,
    # Qwen3: <think>...</think>, switched off by the chat template's enable_thinking; tool calls
    # in Hermes format.
    "qwen3": ModelProfile(
        name="qwen3",
        thinking=Thinking(parser="qwen3", off={"enable_thinking": False}),
        tool_parser="hermes",
    ),
    # DeepSeek-R1 (and its distills): the template opens <think> itself; no reliable tool calls.
    "deepseek_r1": ModelProfile(name="deepseek_r1", thinking=Thinking(parser="deepseek_r1")),
    # DeepSeek V3.1+: thinking switched by the template's `thinking` flag; its own tool format.
    "deepseek_v3": ModelProfile(
        name="deepseek_v3",
        thinking=Thinking(parser="deepseek_v3", off={"thinking": False}),
        tool_parser="deepseek_v31",
    ),
    # gpt-oss: harmony channels (analysis = thinking); reasoning_effort is native to it.
    "gpt_oss": ModelProfile(
        name="gpt_oss",
        thinking=Thinking(
            parser="openai_gptoss",
            start="<|channel|>analysis<|message|>",
            end="<|end|>",
            answer_prompt="<|start|>assistant<|channel|>final<|message|>",
        ),
        tool_parser="openai",
    ),
    # Llama 3.x instruct: JSON tool calls, no thinking.
    "llama3": ModelProfile(name="llama3", tool_parser="llama3_json"),
    # Qwen2.5 instruct (the GPU config's tiers): Hermes-format <tool_call> blocks, no thinking.
    "qwen2.5": ModelProfile(name="qwen2.5", tool_parser="hermes"),
    # The bundled SmolLM2-135M: its prepared chat template lists the tools and asks for a
    # Python-style list of calls (``[name(arg="value")]``); pythonic needs no special tokens,
    # which SmolLM2's vocabulary lacks (hermes needs <tool_call>, llama3_json <|python_tag|>).
    "smollm2": ModelProfile(name="smollm2", tool_parser="pythonic"),
    # The bundled thinking variant (``ttc models prepare smollm2-135m-thinking``): its template
    # opens <think> with a seed sentence, it never closes it, so the gateway forces every
    # budget; a 135M model needs small budgets to answer in seconds on a CPU. ``start`` is the
    # whole opening, so a closed thinking (forcing, probes) is the prefix the model wrote after.
    "smollm2_thinking": ModelProfile(
        name="smollm2_thinking",
        thinking=Thinking(
            parser="deepseek_r1",
            start=THINK_OPENING,
            budget_mechanism="forced",
            budgets={"minimal": 0, "low": 32, "medium": 96, "high": 256},
            # A forced answer of the 135M model is its first line; past it the model rambles.
            answer_tokens=32,
        ),
    ),
}


def worker_args(profile: ModelProfile) -> tuple[str, ...]:
    """The vLLM serve flags a worker of this profile needs (parsers), in a stable order."""
    args: list[str] = []
    if profile.thinking is not None:
        args += ["--reasoning-parser", profile.thinking.parser]
    if profile.tool_parser is not None:
        args += ["--enable-auto-tool-choice", "--tool-call-parser", profile.tool_parser]
    return tuple(args)
