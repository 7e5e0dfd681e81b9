"""Config reload swaps the router without touching requests already planned."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from core.request import GenRequest
from policies.adaptive_bon import AdaptiveBonParams
from server.app import build_context, router_factory
from server.config import load_settings
from server.reload import ConfigReloader

CONFIG: dict[str, Any] = {
    "tiers": {"t": {"model": "m", "endpoints": ["http://127.0.0.1:9"]}},
    "policies": {"default": "single"},
}
REQ = GenRequest(messages=({"role": "user", "content": "hi"},), ttc={"policy": "adaptive_bon"})


def write(path: Path, config: dict[str, Any]) -> None:
    path.write_text(yaml.safe_dump(config))


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Path, ConfigReloader]:
    path = tmp_path / "config.yaml"
    write(path, CONFIG)
    state = build_context(load_settings(path))
    return path, ConfigReloader(path, state, router_factory(state.pool, state.shared))


async def test_reload_applies_new_policy_parameters(setup: tuple[Path, ConfigReloader]) -> None:
    path, reloader = setup
    before = reloader.state.lifecycle.router
    assert before.decide(REQ).params.confidence == 0.9  # type: ignore[attr-defined]
    write(path, {**CONFIG, "policies": {"adaptive_bon": {"confidence": 0.97}}})
    assert await reloader.reload()
    after = reloader.state.lifecycle.router
    assert after is not before
    assert after.decide(REQ).params.confidence == 0.97  # type: ignore[attr-defined]
    assert reloader.state.settings.policies.of(AdaptiveBonParams).confidence == 0.97
    await reloader.close()  # closes the old router at once instead of after the grace period


async def test_invalid_file_keeps_the_running_config(setup: tuple[Path, ConfigReloader]) -> None:
    path, reloader = setup
    before = reloader.state.lifecycle.router
    write(path, {**CONFIG, "policies": {"adaptive_bon": {"max_samples": -1}}})
    assert not await reloader.reload()
    assert reloader.state.lifecycle.router is before
    assert reloader.reloads == {"ok": 0, "error": 1}


async def test_tier_changes_wait_for_restart(setup: tuple[Path, ConfigReloader]) -> None:
    path, reloader = setup
    tiers = {"t": {"model": "other", "endpoints": ["http://127.0.0.1:9"]}}
    write(path, {**CONFIG, "tiers": tiers})
    assert await reloader.reload()
    assert reloader.state.settings.tiers["t"].model == "m"
    await reloader.close()
