"""Config of the worker side: tiers, their endpoints or local launch, and pool behaviour."""

from __future__ import annotations

from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from core.profile import ModelProfile, Thinking
from workers.engines import DEFAULT_ENGINE, ENGINES
from workers.profiles import PRESETS


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LaunchConfig(_Model):
    """A vLLM worker the gateway starts and supervises itself (the embedded default)."""

    model: str = Field("smollm2-135m", description="bundled model name or a model folder")
    host: str = "127.0.0.1"
    port: int = Field(8100, ge=1, le=65535)
    served_names: tuple[str, ...] = Field((), description="extra names the worker answers to")
    max_model_len: int = Field(2048, ge=128)
    kv_cache_gib: int = Field(2, ge=1, description="VLLM_CPU_KVCACHE_SPACE on the CPU build")
    extra_args: tuple[str, ...] = ()
    startup_timeout_s: float = Field(900.0, gt=0)
    restart: bool = True

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


class DiscoveryConfig(_Model):
    """Workers found by resolving a DNS name, e.g. a Kubernetes headless Service.

    Every address the name resolves to is one worker at ``scheme://address:port``.
    """

    dns: str = Field(description="name to resolve, e.g. vllm-small.ttc.svc.cluster.local")
    port: int = Field(8000, ge=1, le=65535)
    scheme: Literal["http", "https"] = "http"
    interval_s: float = Field(5.0, gt=0, description="how often the name is resolved again")


class ThinkingConfig(_Model):
    """``core.profile.Thinking`` in the config (see it for what each field means)."""

    parser: str = Field(description="vLLM --reasoning-parser of the tier's workers")
    start: str = "<think>"
    end: str = "</think>"
    answer_prompt: str = "\n\nThe final answer is "
    off: dict[str, Any] = Field(
        default_factory=dict, description="chat_template_kwargs that switch thinking off"
    )
    budget_mechanism: Literal["vllm", "forced"] = "forced"
    budgets: dict[str, int] = Field(
        default_factory=lambda: {"minimal": 0, "low": 256, "medium": 1024, "high": 4096},
        description="thinking tokens per reasoning_effort (minimal, low, medium, high)",
    )
    max_budget: int = Field(32768, ge=0, description="cap on a request's ttc.thinking_budget")
    answer_tokens: int = Field(
        256, ge=1, description="answer room after forced thinking (the reserve under max_tokens)"
    )


class ProfileConfig(_Model):
    """A model profile spelled out in the config instead of a preset name."""

    name: str = "custom"
    thinking: ThinkingConfig | None = None
    tool_parser: str | None = Field(None, description="vLLM --tool-call-parser; null: no tools")

    def build(self) -> ModelProfile:
        thinking = Thinking(**self.thinking.model_dump()) if self.thinking else None
        return ModelProfile(name=self.name, thinking=thinking, tool_parser=self.tool_parser)


class TierConfig(_Model):
    """One model tier: the served model name, where its workers are, what engine serves it and
    with which credentials, and what its tokens cost."""

    model: str = Field(description="model name sent upstream (vLLM --served-model-name)")
    engine: str = Field(
        DEFAULT_ENGINE, description="what serves the tier: vllm | sglang | llamacpp | openai"
    )
    endpoints: tuple[str, ...] = Field(
        (),
        description="base URLs of running servers; one with a path is the API root as the"
        " OpenAI SDK takes it (https://host/v1), one without gets /v1",
    )
    launch: LaunchConfig | None = None
    discovery: DiscoveryConfig | None = None
    description: str = ""
    api_key_env: str | None = Field(
        None, description="environment variable holding the upstream's key (sent as Bearer)"
    )
    api_key_file: str | None = Field(
        None, description="file holding the upstream's key, read again when it changes"
    )
    headers: dict[str, str] = Field(
        default_factory=dict, description="extra headers on every upstream call"
    )
    cost_per_1k_tokens: float = Field(0.0, ge=0, description="price of any token (fallback)")
    cost_per_1k_input_tokens: float | None = Field(None, ge=0, description="prompt tokens")
    cost_per_1k_output_tokens: float | None = Field(None, ge=0, description="completion tokens")
    default_max_tokens: int | None = Field(
        None,
        ge=1,
        description="max_tokens of a request that sends none (hosted APIs cap theirs too); "
        "null: the model's context is the only bound",
    )
    request_timeout_s: float = Field(600.0, gt=0)
    connect_timeout_s: float = Field(2.0, gt=0)
    stream_idle_timeout_s: float = Field(
        60.0, gt=0, description="a stream silent this long is a dead worker"
    )
    profile: str | ProfileConfig = Field(
        "plain", description="model profile: a preset of workers.profiles, or spelled out"
    )

    @field_validator("profile")
    @classmethod
    def _known_preset(cls, value: str | ProfileConfig) -> str | ProfileConfig:
        if isinstance(value, str) and value not in PRESETS:
            raise ValueError(f"unknown profile {value!r}; presets: {', '.join(PRESETS)}")
        return value

    @field_validator("engine")
    @classmethod
    def _known_engine(cls, value: str) -> str:
        if value not in ENGINES:
            raise ValueError(f"unknown engine {value!r}; engines: {', '.join(ENGINES)}")
        return value

    @field_validator("endpoints")
    @classmethod
    def _plain_urls(cls, urls: tuple[str, ...]) -> tuple[str, ...]:
        for url in urls:
            check_endpoint(url)
        return urls

    @field_validator("headers")
    @classmethod
    def _no_credentials_in_headers(cls, headers: dict[str, str]) -> dict[str, str]:
        if any(name.lower() == "authorization" for name in headers):
            raise ValueError("put the upstream's key in api_key_env or api_key_file")
        return headers

    def model_profile(self) -> ModelProfile:
        if isinstance(self.profile, str):
            return PRESETS[self.profile]
        return self.profile.build()

    @model_validator(mode="after")
    def _has_workers(self) -> TierConfig:
        if not self.endpoints and self.launch is None and self.discovery is None:
            raise ValueError("a tier needs 'endpoints', 'launch' or 'discovery'")
        if self.api_key_env is not None and self.api_key_file is not None:
            raise ValueError("give api_key_env or api_key_file, not both")
        return self

    @model_validator(mode="after")
    def _engine_fits(self) -> TierConfig:
        """What only vLLM does: the launcher starts vLLM; only vLLM holds a thinking budget."""
        if self.engine == DEFAULT_ENGINE:
            return self
        if self.launch is not None:
            raise ValueError(f"'launch' starts a vLLM worker; engine {self.engine} cannot")
        thinking = self.model_profile().thinking
        if thinking is not None and thinking.budget_mechanism == "vllm":
            raise ValueError(
                f"budget_mechanism 'vllm' needs engine vllm (engine {self.engine}: use 'forced')"
            )
        return self

    def urls(self) -> tuple[str, ...]:
        """The static workers (launched and listed); discovered ones come and go at run time."""
        launched = (self.launch.url,) if self.launch else ()
        return tuple(u.rstrip("/") for u in (*launched, *self.endpoints))

    def price_per_1k(self, kind: Literal["input", "output"]) -> float:
        """Price of 1,000 prompt (``input``) or completion (``output``) tokens; a side left
        unset costs ``cost_per_1k_tokens``."""
        split = self.cost_per_1k_input_tokens if kind == "input" else self.cost_per_1k_output_tokens
        return self.cost_per_1k_tokens if split is None else split


def check_endpoint(url: str) -> None:
    """An endpoint is ``http(s)://host[:port][/path]``: no credentials (they would reach logs
    and metric labels, which name workers by URL), no query, no fragment."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"endpoint {url!r} is not an http(s) URL")
    if parts.username is not None or parts.password is not None:
        raise ValueError("an endpoint carries no credentials: use api_key_env or api_key_file")
    if parts.query or parts.fragment:
        raise ValueError(f"endpoint {url!r}: no query or fragment")


class BreakerConfig(_Model):
    """Circuit breaker per worker: eject after consecutive failures; a worker that was down is
    re-admitted by its first passing health check, one whose calls failed by a trial call after
    a backoff that doubles with each failed trial (see ``workers.breaker``, ``workers.trials``)."""

    failure_threshold: int = Field(3, ge=1, description="consecutive failures that eject")
    open_base_s: float = Field(1.0, gt=0, description="first backoff before a trial call")
    open_max_s: float = Field(30.0, gt=0, description="backoff doubles up to this")
    trial_timeout_s: float = Field(
        10.0, gt=0, description="a trial call (one token) slower than this has failed"
    )


class PoolConfig(_Model):
    health_interval_s: float = Field(2.0, gt=0)
    health_timeout_s: float = Field(2.0, gt=0)
    busy_grace_s: float = Field(
        20.0,
        ge=0,
        description="a timed-out check of a worker that answered a call this recently is busy,"
        " not failed (0: every timeout is a failure)",
    )
    max_attempts: int = Field(3, ge=1, le=10, description="tries on different workers")
    retry_after_s: int = Field(
        5,
        ge=1,
        description="most Retry-After a 503 says; it says when the next try is due: the next"
        " health check, or the end of a breaker's backoff",
    )
    max_connections: int = Field(512, ge=1)
    breaker: BreakerConfig = BreakerConfig()
    scrape_interval_s: float = Field(1.0, gt=0, description="how often vLLM /metrics is read")
    signal_max_age_s: float = Field(3.0, gt=0, description="older load signals are unknown")
    affinity: Literal["prefix", "caller", "none"] = Field(
        "prefix", description="key of sticky placement: prompt prefix, caller's key, or none"
    )
    affinity_prefix_chars: int = Field(2048, ge=64, description="prompt characters hashed")
    affinity_overload_factor: float = Field(2.0, ge=1.0)
    affinity_overload_slack: float = Field(2.0, ge=0.0)
