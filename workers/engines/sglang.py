"""SGLang's OpenAI server (``python -m sglang.launch_server``).

Serves chat and text completions with ``n``, logprobs, ``continue_final_message``, reasoning
(``--reasoning-parser``, as ``reasoning_content``), tool calls (``--tool-call-parser``),
``response_format`` schemas and token-id prompts. Its structured-output extras are its own
(``regex``, ``ebnf``), not vLLM's ``guided_*``; it has no ``add_generation_prompt`` field (a
continued message needs none) and no thinking budget of vLLM's kind. Health at ``/health``;
load from ``/metrics`` when started with ``--enable-metrics`` (``sglang:token_usage`` is the
fraction of its KV cache in use).
"""

from __future__ import annotations

from workers.engines.base import (
    CHAT,
    COMPLETIONS,
    CONTINUE,
    LOGPROBS,
    REASONING,
    STRUCTURED,
    TOKEN_PROMPTS,
    TOOLS,
    TOP_LOGPROBS,
    Engine,
    LoadGauges,
    N,
)

GAUGES = LoadGauges(
    running="sglang:num_running_reqs",
    waiting="sglang:num_queue_reqs",
    kv_usage=("sglang:token_usage",),
)

ENGINE = Engine(
    name="sglang",
    serves=frozenset(
        {CHAT, COMPLETIONS, N, LOGPROBS, TOP_LOGPROBS, CONTINUE, REASONING, TOOLS, STRUCTURED}
        | {TOKEN_PROMPTS}
    ),
    extensions=frozenset(
        {
            "top_k",
            "min_p",
            "min_tokens",
            "repetition_penalty",
            "stop_token_ids",
            "ignore_eos",
            "skip_special_tokens",
            "chat_template_kwargs",
            "continue_final_message",
            "regex",
            "ebnf",
            "priority",
            "echo",
        }
    ),
    load=GAUGES,
    running_usage=True,
)
