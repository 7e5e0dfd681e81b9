"""The command a launched worker runs: ``vllm serve``, eager on the CPU build unless the config
asks for compilation."""

from __future__ import annotations

from pathlib import Path

import pytest

from workers import launcher
from workers.config import LaunchConfig
from workers.launcher import start_hint, vllm_command


def command(*extra: str) -> list[str]:
    return vllm_command(LaunchConfig(model="/m", extra_args=extra), Path("/m"), ("m",))


def test_the_worker_runs_vllm_serve_with_the_model_first() -> None:
    assert command()[1:5] == ["-m", "workers.vllm_cli", "serve", "/m"]


def test_the_cpu_build_starts_eager_and_a_config_can_bring_compilation_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(launcher, "cpu_build", lambda: True)
    assert "--enforce-eager" in command()
    compiled = command("--no-enforce-eager")
    assert compiled.index("--no-enforce-eager") > compiled.index("--enforce-eager")  # last wins
    monkeypatch.setattr(launcher, "cpu_build", lambda: False)
    assert "--enforce-eager" not in command()


def test_this_machine_has_the_cpu_build() -> None:
    assert launcher.cpu_build()


def test_the_progress_hint_follows_the_mode_the_worker_runs_in() -> None:
    bundled = LaunchConfig()
    assert "compiling" not in start_hint(bundled, ["--enforce-eager"])
    assert "compiling" in start_hint(bundled, ["--enforce-eager", "--no-enforce-eager"])
    assert "compiling" in start_hint(bundled, [])
    assert start_hint(LaunchConfig(model="/m"), ["--enforce-eager"]) == ""
