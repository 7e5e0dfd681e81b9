"""vLLM's OpenAI server (``vllm serve``, the CPU build too): the reference engine.

It serves everything the gateway asks for (continuing a final message, reasoning and tool-call
parsers, structured outputs, token-id prompts) and every extension field
(``server.api.common.schema.VLLM_EXTRA_FIELDS``); health at ``/health``, load from its
``vllm:`` gauges (``vllm:gpu_cache_usage_perc`` before v0.10).
"""

from __future__ import annotations

from workers.engines.base import CAPABILITIES, Engine, LoadGauges

GAUGES = LoadGauges(
    running="vllm:num_requests_running",
    waiting="vllm:num_requests_waiting",
    kv_usage=("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"),
)

ENGINE = Engine(name="vllm", serves=CAPABILITIES, load=GAUGES, running_usage=True)
