"""The ``Settings`` tree: YAML config validated by pydantic, environment overrides on top.

``load_settings(path)`` reads the YAML file; any ``TTC_<SECTION>__<KEY>`` environment variable
overrides it (for example ``TTC_SERVER__PORT=9000``). Errors name the bad key and the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from policies import registry
from policies.config import PoliciesConfig
from router.config import RouterConfig
from state.config import AuthConfig, CacheConfig, LimitsConfig, RedisConfig, ResponsesConfig
from workers.config import PoolConfig, TierConfig


class ConfigError(Exception):
    """The config file is missing, not YAML, or fails validation; the message says where."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerConfig(_Section):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    max_body_bytes: int = Field(1_048_576, ge=1024, description="larger bodies get a 413")
    request_timeout_s: float = Field(600.0, gt=0, description="deadline of one request")
    stream_keepalive_s: float = Field(5.0, gt=0, description="SSE comment interval while busy")
    processes: Annotated[int, Field(ge=1)] | Literal["auto"] = Field(
        1,
        description="gateway processes on one port (SO_REUSEPORT); auto: one per core; more"
        " than one needs redis.url (stored responses, limits and the cache are shared there)",
    )
    log_level: str = "info"
    log_levels: dict[str, str] = Field(
        default_factory=dict,
        description="per-logger levels, e.g. {httpcore: debug}; third-party loggers (httpx,"
        " httpcore, aiohttp, ...) stay at warning unless named here",
    )
    admin_key_env: str | None = Field(
        None,
        description="env var holding the admin key that /metrics, /docs, /redoc and"
        " /openapi.json then require (null: see open_admin_pages)",
    )
    open_admin_pages: bool | None = Field(
        None,
        description="those pages without an admin key: null, open while host is loopback"
        " (127.0.0.1, ::1, localhost) and closed (403) beyond; true, open to anyone; false,"
        " closed",
    )
    cors_origins: tuple[str, ...] = Field(
        (), description="browser origins allowed to call the API (CORS); empty: none"
    )

    @model_validator(mode="after")
    def _one_admin_rule(self) -> ServerConfig:
        if self.admin_key_env is not None and self.open_admin_pages:
            raise ValueError(
                "open_admin_pages: true serves the admin pages to anyone, admin_key_env to the"
                " key holder only: set one of them"
            )
        return self


class TracingConfig(_Section):
    """OpenTelemetry traces of every request and upstream call (``server.tracing``)."""

    enabled: bool = Field(False, description="off: no spans, no traceparent sent to workers")
    endpoint: str = Field(
        "http://127.0.0.1:4318/v1/traces",
        description="OTLP/HTTP traces endpoint (an OpenTelemetry collector, Jaeger, Tempo)",
    )
    service_name: str = Field("ttc-gateway", min_length=1, description="service.name of spans")
    sample_ratio: float = Field(
        1.0,
        ge=0.0,
        le=1.0,
        description="share of new traces recorded; a caller's traceparent decides for its own",
    )
    headers: dict[str, str] = Field(
        default_factory=dict,
        description="extra headers to the collector; secrets belong in the environment"
        " (OTEL_EXPORTER_OTLP_TRACES_HEADERS), read when this is empty",
    )
    export_timeout_s: float = Field(
        2.0,
        gt=0,
        le=60,
        description="one export to the collector, retries included (also"
        " bounds how long stopping waits on a collector that is down)",
    )


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="TTC_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    server: ServerConfig = ServerConfig()
    tiers: dict[str, TierConfig]
    pool: PoolConfig = PoolConfig()
    router: RouterConfig = RouterConfig()
    policies: PoliciesConfig = PoliciesConfig()
    redis: RedisConfig = RedisConfig()
    auth: AuthConfig = AuthConfig()
    limits: LimitsConfig = LimitsConfig()
    cache: CacheConfig = CacheConfig()
    responses: ResponsesConfig = ResponsesConfig()
    tracing: TracingConfig = TracingConfig()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (env_settings, init_settings)  # the environment overrides the YAML file

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if not self.tiers:
            raise ValueError("tiers: at least one tier is required")
        if "auto" in self.tiers:
            raise ValueError("tiers: 'auto' is reserved for the router")
        if self.router.default_tier and self.router.default_tier not in self.tiers:
            raise ValueError(f"router.default_tier: unknown tier {self.router.default_tier!r}")
        if problems := self.router.unknown_tiers(tuple(self.tiers)):
            raise ValueError("; ".join(problems))
        if problems := self.policies.unknown_tiers(tuple(self.tiers)):
            raise ValueError("; ".join(problems))
        if self.policies.default not in registry.names():
            raise ValueError(f"policies.default: unknown policy {self.policies.default!r}")
        for key in self.auth.keys:
            unknown = sorted(set(key.tiers or ()) - set(self.tiers))
            if unknown:
                raise ValueError(f"auth.keys[{key.name}].tiers: unknown tiers {unknown}")
        return self


def format_validation_error(exc: ValidationError, source: str) -> str:
    lines = [f"invalid config {source}:"]
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(root)"
        lines.append(f"  {key}: {err['msg']}")
    return "\n".join(lines)


def settings_from_dict(data: dict[str, Any], source: str = "<dict>") -> Settings:
    try:
        return Settings(**data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source)) from exc


def load_settings(path: str | Path) -> Settings:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"config {path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"config {path} must be a mapping at the top level")
    return settings_from_dict(data, str(path))
