from __future__ import annotations

from pathlib import Path

import pytest

from server.config import ConfigError, load_settings, settings_from_dict

ROOT = Path(__file__).resolve().parents[2]


def test_default_config_is_valid_and_launches_one_worker() -> None:
    settings = load_settings(ROOT / "config" / "default.yaml")
    tier = settings.tiers["smollm2-135m"]
    assert tier.launch is not None and tier.launch.model == "smollm2-135m"
    assert tier.urls() == ("http://127.0.0.1:8100",)


def test_error_names_the_bad_key() -> None:
    with pytest.raises(ConfigError) as info:
        settings_from_dict(
            {"tiers": {"a": {"model": "m", "endpoints": ["http://x"]}}, "server": {"prot": 1}}
        )
    assert "server.prot" in str(info.value)


def test_tier_without_workers_is_refused() -> None:
    with pytest.raises(ConfigError) as info:
        settings_from_dict({"tiers": {"a": {"model": "m"}}})
    assert "tiers.a" in str(info.value) and "endpoints" in str(info.value)


def test_policy_param_out_of_range_names_it() -> None:
    with pytest.raises(ConfigError) as info:
        settings_from_dict(
            {
                "tiers": {"a": {"model": "m", "endpoints": ["http://x"]}},
                "policies": {"adaptive_bon": {"confidence": 1.5}},
            }
        )
    assert "policies.adaptive_bon.confidence" in str(info.value)


def test_environment_overrides_yaml(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TTC_SERVER__PORT", "9123")
    settings = settings_from_dict({"tiers": {"a": {"model": "m", "endpoints": ["http://x"]}}})
    assert settings.server.port == 9123


def test_unreadable_and_non_yaml_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("tiers: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_settings(bad)


def test_auto_is_reserved() -> None:
    with pytest.raises(ConfigError, match="reserved"):
        settings_from_dict({"tiers": {"auto": {"model": "m", "endpoints": ["http://x"]}}})
