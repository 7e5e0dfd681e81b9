"""The llama.cpp server: ``python -m llama_cpp.server`` (llama-cpp-python), serving a GGUF file.

It takes one request at a time (one model context behind a lock; a new request may interrupt
a stream in progress), so the pool keeps one call in flight per worker. It accepts ``n`` and
ignores it (one choice per call), so a vote is fanned out as separate calls. Chat and text
completions with logprobs and top_logprobs; ``response_format`` schemas through its grammar
sampler; no reasoning parser, no tool-call parsing under a plain chat format, no continuing of
a final message, text prompts only. There is no ``/health`` (a 404) and no ``/metrics``:
health is read from ``/v1/models``, load is the gateway's own in-flight count. Streams carry
no usage (the gateway counts their deltas).
"""

from __future__ import annotations

from workers.engines.base import CHAT, COMPLETIONS, LOGPROBS, STRUCTURED, TOP_LOGPROBS, Engine

ENGINE = Engine(
    name="llamacpp",
    serves=frozenset({CHAT, COMPLETIONS, LOGPROBS, TOP_LOGPROBS, STRUCTURED}),
    extensions=frozenset({"top_k", "min_p", "min_tokens", "echo"}),
    health_path=None,
    one_at_a_time=True,
    stream_usage=False,
)
