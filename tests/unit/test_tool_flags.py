"""Every worker the project launches or deploys carries its tier profile's tool-call flags."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from deploy import tool_flags
from server.config import settings_from_dict
from workers.config import LaunchConfig
from workers.launcher import vllm_command
from workers.profiles import PRESETS, worker_args


def test_a_launched_worker_carries_its_profile_flags() -> None:
    launch = LaunchConfig(model="/models/m")
    cmd = vllm_command(launch, Path("/models/m"), ("m",), PRESETS["smollm2"])
    assert cmd[cmd.index("--tool-call-parser") + 1] == "pythonic"
    assert "--enable-auto-tool-choice" in cmd
    assert "--tool-call-parser" not in vllm_command(launch, Path("/models/m"), ("m",))


def test_ttc_worker_profile_expands_to_the_preset_flags() -> None:
    argv = ["--port", "8000", "--profile", "smollm2"]
    assert tool_flags.effective_args(argv) == ["--port", "8000", *worker_args(PRESETS["smollm2"])]
    assert tool_flags.missing_flags(argv, PRESETS["smollm2"]) == []
    assert tool_flags.missing_flags(argv, PRESETS["qwen2.5"]) == ["--tool-call-parser hermes"]


def test_a_deployed_worker_without_the_flags_is_a_problem() -> None:
    settings = settings_from_dict(
        {
            "tiers": {
                "small": {
                    "model": "s",
                    "endpoints": ["http://vllm-small:8000"],
                    "profile": "qwen2.5",
                },
                "plain": {"model": "p", "endpoints": ["http://vllm-plain:8000"]},
            }
        }
    )
    services: dict[str, Any] = {
        "vllm-small": {"command": ["--model", "Qwen/Qwen2.5-1.5B-Instruct"]},
        "vllm-plain": {"command": ["--model", "x"]},
    }
    found = tool_flags.problems(settings, tool_flags.compose_worker_args(services), "gpu.yaml")
    assert found == [
        "gpu.yaml: tier small (profile qwen2.5) calls tools but its worker "
        "vllm-small lacks --enable-auto-tool-choice, --tool-call-parser hermes"
    ]
    services["vllm-small"]["command"] += worker_args(PRESETS["qwen2.5"])
    assert tool_flags.problems(settings, tool_flags.compose_worker_args(services), "x") == []


def test_a_reasoning_tiers_worker_needs_its_reasoning_parser() -> None:
    settings = settings_from_dict(
        {
            "tiers": {
                "think": {
                    "model": "t",
                    "endpoints": ["http://vllm-think:8000"],
                    "profile": "qwen3",
                },
            }
        }
    )
    services: dict[str, Any] = {
        "vllm-think": {
            "command": [
                "--model",
                "Qwen/Qwen3-8B",
                "--enable-auto-tool-choice",
                "--tool-call-parser",
                "hermes",
            ]
        }
    }
    found = tool_flags.problems(settings, tool_flags.compose_worker_args(services), "gpu.yaml")
    assert found == [
        "gpu.yaml: tier think (profile qwen3) thinks and calls tools but its "
        "worker vllm-think lacks --reasoning-parser qwen3"
    ]
    services["vllm-think"]["command"] += ["--reasoning-parser", "qwen3"]
    assert tool_flags.problems(settings, tool_flags.compose_worker_args(services), "x") == []
