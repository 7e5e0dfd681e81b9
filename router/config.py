"""The ``router:`` section of the config."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class RouterConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    default_tier: str | None = Field(
        None, description="tier for model='auto' when no band applies (default: the first tier)"
    )
