"""The engine seam: what an upstream serves and how the pool talks to it, as plain data.

A tier's ``engine`` (``tiers.<name>.engine``) names one ``Engine``; each lives in its own module
of this package and is registered in ``workers.engines``. An engine is a frozen description,
never code that branches on its name: what it serves (``serves``, capability names below),
which request fields beyond OpenAI's it takes (``extensions``), where its health and load are
read (or that they are not), whether it takes one request at a time, whether it wants
``max_completion_tokens``, whether a stream can ask it for usage.

Capability names are fixed strings: the router matches a policy's needs against them.
"""

from __future__ import annotations

from dataclasses import dataclass

CHAT = "chat"  # POST /v1/chat/completions
COMPLETIONS = "completions"  # POST /v1/completions
N = "n"  # several choices in one call (without it the pool fans a vote out as separate calls)
LOGPROBS = "logprobs"  # log-probabilities of the sampled tokens
TOP_LOGPROBS = "top_logprobs"  # and of the most likely alternatives
CONTINUE = "continue_final_message"  # a trailing assistant message is continued, not answered
REASONING = "reasoning"  # the thinking split off into reasoning fields
TOOLS = "tools"  # tool-call fields in and out
STRUCTURED = "structured_outputs"  # response_format json_schema (output held to a schema)
TOKEN_PROMPTS = "token_prompts"  # /v1/completions prompts given as token ids

CAPABILITIES = frozenset(
    {CHAT, COMPLETIONS, N, LOGPROBS, TOP_LOGPROBS, CONTINUE, REASONING, TOOLS, STRUCTURED}
    | {TOKEN_PROMPTS}
)


@dataclass(frozen=True)
class LoadGauges:
    """The Prometheus gauges of an engine's ``/metrics`` the balancer reads: requests running,
    requests waiting, and the fraction of its KV cache in use (names tried in order)."""

    running: str
    waiting: str
    kv_usage: tuple[str, ...] = ()


@dataclass(frozen=True)
class Engine:
    """One kind of OpenAI-compatible server.

    ``extensions``: the request fields beyond OpenAI's that it takes (None: every extension
    the gateway knows, vLLM's). ``health_path``: a liveness path under the server's root
    (None: health is read from ``GET /v1/models`` alone). ``health_every_s``: the least time
    between two checks of one worker (a hosted API's ``/v1/models`` counts against its rate
    limit). ``load``: the gauges of its ``/metrics`` (None: no load signal, the balancer goes
    by the gateway's own in-flight count). ``one_at_a_time``: it serves one request at a time,
    so the pool keeps at most one call in flight per worker. ``max_completion_tokens``: a chat
    body's ``max_tokens`` is sent under that name. ``stream_usage``: a stream may ask for its
    usage (``stream_options.include_usage``); ``running_usage``: and for it on every chunk
    (vLLM's ``continuous_usage_stats``).
    """

    name: str
    serves: frozenset[str]
    extensions: frozenset[str] | None = None
    health_path: str | None = "/health"
    health_every_s: float = 0.0
    load: LoadGauges | None = None
    one_at_a_time: bool = False
    max_completion_tokens: bool = False
    stream_usage: bool = True
    running_usage: bool = False

    def __post_init__(self) -> None:
        unknown = self.serves - CAPABILITIES
        if unknown:
            raise ValueError(f"engine {self.name}: unknown capabilities {sorted(unknown)}")

    def can(self, capability: str) -> bool:
        return capability in self.serves

    def takes(self, field: str) -> bool:
        """Does it take the extension ``field`` (one beyond OpenAI's request fields)?"""
        return self.extensions is None or field in self.extensions
