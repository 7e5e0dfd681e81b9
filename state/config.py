"""The ``redis:``, ``auth:``, ``limits:`` and ``cache:`` sections of the config.

Defaults keep the embedded setup self-contained: no Redis (every replica keeps its own state),
authentication off, no limits, no cache. Deploy configs turn them on.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

_HEX64 = re.compile(r"^[0-9a-f]{64}$")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RedisConfig(_Section):
    """Where shared state lives; ``url: null`` keeps every replica local-only."""

    url: str | None = Field(None, description="redis://host:6379/0; null: no Redis")
    key_prefix: str = Field("ttc:", description="prefix of every key the gateway writes")
    # 100 ms: a healthy Redis on the same network answers in ~1 ms; anything slower is treated
    # as down rather than allowed to add latency to every request.
    timeout_s: float = Field(0.1, gt=0, le=5.0, description="deadline of one Redis call")
    failures_to_open: int = Field(3, ge=1, description="consecutive failures that open the breaker")
    open_s: float = Field(5.0, gt=0, description="how long the breaker stays open before a probe")
    max_connections: int = Field(64, ge=1, description="connection pool size")


class ContractTerms(_Section):
    """A key's compute contract (``core.contract``): defaults for a request that sets none of
    ``ttc.max_total_tokens`` / ``max_cost`` / ``deadline_ms``, and ceilings no request may pass."""

    max_total_tokens: int | None = Field(None, ge=1, description="default; null: unbounded")
    max_cost: float | None = Field(None, gt=0, description="default, in cost_per_1k_tokens units")
    deadline_ms: int | None = Field(None, ge=1, description="default; null: server timeout")
    ceiling_total_tokens: int | None = Field(None, ge=1, description="most a request may ask")
    ceiling_cost: float | None = Field(None, gt=0, description="most a request may ask")
    ceiling_deadline_ms: int | None = Field(None, ge=1, description="most a request may ask")
    over_ceiling: Literal["reject", "clamp"] = Field(
        "reject", description="a request above a ceiling: a 400, or clamped to the ceiling"
    )
    over_budget: Literal["reject", "shrink"] = Field(
        "reject",
        description="a worst case above the key's remaining daily tokens: a 429 with "
        "Retry-After, or max_total_tokens shrunk to what remains",
    )

    @model_validator(mode="after")
    def _defaults_within_ceilings(self) -> ContractTerms:
        pairs = (
            ("max_total_tokens", "ceiling_total_tokens"),
            ("max_cost", "ceiling_cost"),
            ("deadline_ms", "ceiling_deadline_ms"),
        )
        for default, ceiling in pairs:
            low, high = getattr(self, default), getattr(self, ceiling)
            if low is not None and high is not None and low > high:
                raise ValueError(f"{default}={low} is above {ceiling}={high}")
        return self


class ApiKeyConfig(_Section):
    """One API key. The secret itself never appears in config: give its hash or an env var."""

    name: str = Field(min_length=1, description="shown in logs and metrics instead of the key")
    key_hash: str | None = Field(
        None, description="hex SHA-256 of the key (HMAC-SHA256 with the pepper when one is set)"
    )
    key_env: str | None = Field(None, description="environment variable holding the key")
    tiers: tuple[str, ...] | None = Field(None, description="tiers it may use; null: all")
    rpm: int | None = Field(None, ge=1, description="requests per minute; null: limits.rpm")
    tpm: int | None = Field(None, ge=1, description="tokens per minute; null: limits.tpm")
    tokens_per_day: int | None = Field(None, ge=1, description="null: limits.tokens_per_day")
    contract: ContractTerms | None = Field(None, description="null: limits.contract")

    @field_validator("key_hash")
    @classmethod
    def _hex(cls, value: str | None) -> str | None:
        if value is not None and not _HEX64.match(value.lower()):
            raise ValueError("key_hash must be 64 hex characters (SHA-256)")
        return value.lower() if value is not None else None

    @model_validator(mode="after")
    def _one_source(self) -> ApiKeyConfig:
        if (self.key_hash is None) == (self.key_env is None):
            raise ValueError("give exactly one of key_hash or key_env")
        return self


class AuthConfig(_Section):
    """``Authorization: Bearer <key>`` checking; off by default for the embedded setup."""

    enabled: bool = False
    pepper_env: str | None = Field(
        None, description="env var holding a secret pepper: keys are hashed with HMAC-SHA256"
    )
    keys: tuple[ApiKeyConfig, ...] = ()
    redis_keys: bool = Field(
        True, description="also look keys up in Redis (hash <prefix>key:<key hash>)"
    )


class LimitsConfig(_Section):
    """Default limits of a key (and of all anonymous traffic when auth is off)."""

    rpm: int | None = Field(None, ge=1, description="requests per minute; null: unlimited")
    tpm: int | None = Field(None, ge=1, description="tokens per minute; null: unlimited")
    tokens_per_day: int | None = Field(None, ge=1, description="compute budget per UTC day")
    algorithm: Literal["sliding", "fixed"] = "sliding"
    replicas: int = Field(
        1, ge=1, description="replicas sharing the limits; the local fallback allows 1/replicas"
    )
    contract: ContractTerms = Field(
        default_factory=ContractTerms, description="every key's contract terms unless its own"
    )
    # 32768: the context of most served chat models; a sample sent without max_tokens can
    # fill its tier's context and nothing smaller bounds it, so its reservation is that.
    context_tokens: int = Field(
        32768,
        ge=128,
        description="worst case of a sample without max_tokens, prompt "
        "included: the largest max_model_len of the tiers",
    )
    # 60 s: a settlement is written within redis.timeout_s of the request's end; a reservation
    # still held a minute past its request's deadline belongs to a replica that died.
    reservation_margin_s: float = Field(
        60.0,
        gt=0,
        description="an unsettled reservation expires this long after its request's deadline",
    )

    @property
    def any(self) -> bool:
        return any(v is not None for v in (self.rpm, self.tpm, self.tokens_per_day))


class CacheConfig(_Section):
    """Exact-match response cache for deterministic requests (temperature 0 or a fixed seed)."""

    enabled: bool = False
    opt_in: bool = Field(True, description='only requests with ttc: {"cache": true}')
    ttl_s: int = Field(3600, ge=1, description="lifetime of an entry")
    max_entry_bytes: int = Field(262_144, ge=1024, description="larger responses are not cached")
    shared_across_keys: bool = Field(
        False, description="one cache for all API keys (else each key sees only its own)"
    )
    # 1024: small answers of a few KiB each keep the local fallback cache to a few MiB.
    local_entries: int = Field(1024, ge=0, description="local LRU entries when redis.url is null")


class ResponsesConfig(_Section):
    """Stored responses of ``POST /v1/responses`` (``store: true``, the default, as OpenAI)."""

    ttl_s: int = Field(30 * 86400, ge=60, description="lifetime of a stored response (30 days)")
    # 4 MiB: a turn holds its input (up to server.max_body_bytes, 1 MiB) and its answer.
    max_bytes: int = Field(4 * 1_048_576, ge=1024, description="larger turns are not stored")
    # 2048 responses of a few KiB: a few MiB for this replica's fallback while Redis is down.
    local_entries: int = Field(2048, ge=0, description="local entries when Redis is unavailable")
