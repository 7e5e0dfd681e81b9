"""A hosted OpenAI-compatible API (OpenAI itself, or any provider speaking its chat API).

Chat only (``/v1/completions`` is legacy and most providers lack it), with ``n``, logprobs,
tool calls and ``response_format`` schemas; no extension field of vLLM's, no continuing of a
final message, no reasoning fields, no token-id prompts. No ``/health`` and no load metrics:
health is ``GET /v1/models`` (with the key), at most once a minute per endpoint, because it
counts against the account's rate limit. Rate limits come back as 429 with ``Retry-After``,
which the pool honours without blaming the endpoint. ``max_tokens`` goes out as
``max_completion_tokens``, the name reasoning models require; streams ask for their usage so
they are billed from the provider's count.
"""

from __future__ import annotations

from workers.engines.base import CHAT, LOGPROBS, STRUCTURED, TOOLS, TOP_LOGPROBS, Engine, N

# 60 s: a hosted endpoint is watched through its calls; a check a minute notices a revoked key
# without spending the account's request budget on it.
HEALTH_EVERY_S = 60.0

ENGINE = Engine(
    name="openai",
    serves=frozenset({CHAT, N, LOGPROBS, TOP_LOGPROBS, TOOLS, STRUCTURED}),
    extensions=frozenset(),
    health_path=None,
    health_every_s=HEALTH_EVERY_S,
    max_completion_tokens=True,
)
