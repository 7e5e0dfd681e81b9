"""``server.processes``: how many gateway processes, and the refusal without Redis."""

from __future__ import annotations

import os
from typing import Any

import pytest

from server.config import ConfigError, Settings, settings_from_dict
from ttc.processes import count

TIERS = {"small": {"model": "m", "endpoints": ["http://127.0.0.1:9"]}}


def _settings(processes: Any, redis_url: str | None = None) -> Settings:
    return settings_from_dict(
        {"server": {"processes": processes}, "tiers": TIERS, "redis": {"url": redis_url}}
    )


def test_one_process_is_the_default_and_needs_no_redis() -> None:
    assert count(settings_from_dict({"tiers": TIERS})) == 1


def test_more_than_one_process_without_redis_is_refused_at_start() -> None:
    with pytest.raises(ConfigError, match="2 processes need redis.url"):
        count(_settings(2))


def test_processes_share_redis_and_auto_is_the_core_count() -> None:
    assert count(_settings(3, "redis://127.0.0.1:6379/0")) == 3
    assert count(_settings("auto", "redis://127.0.0.1:6379/0")) == (os.cpu_count() or 1)


def test_zero_processes_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="server.processes"):
        _settings(0)
