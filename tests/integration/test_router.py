"""The router on the real worker: easy and hard prompts through model="auto" are routed apart.

One gateway with a real probe on every request (``mode: always``, weight 0.2 so the probe
refines but cannot flip these two prompts' bands), a small hard band (2..3 samples) to keep the
CPU worker's time short, and a trace file, so one easy and one hard request show the whole
loop: decision in ``ttc``, probe tokens in ``usage``, decisions in ``/metrics``, trace records.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.integration.conftest import GatewayFactory, gateway_config

EASY = "What is the capital of France?"
HARD = (
    "A farmer has 4 fields with 15 cows in each field. He sells 9 cows and then buys 6 more. "
    "How many cows does he have now? Answer with just the number."
)


@pytest.fixture(scope="module")
def routed(
    worker_url: str, start_gateway: GatewayFactory, tmp_path_factory: pytest.TempPathFactory
) -> tuple[str, Path]:
    traces = tmp_path_factory.mktemp("traces") / "traces.jsonl"
    router = {
        "probe": {"mode": "always", "weight": 0.2},
        "bands": [
            {"name": "easy", "upto": 0.35, "policy": "single"},
            {
                "name": "medium",
                "upto": 0.65,
                "policy": "adaptive_bon",
                "params": {"min_samples": 2, "max_samples": 2},
            },
            {
                "name": "hard",
                "policy": "adaptive_bon",
                "params": {
                    "min_samples": 2,
                    "step": 1,
                    "max_samples": 3,
                    "single_sample_confidence": None,
                },
            },
        ],
        "traces": {"path": str(traces)},
    }
    return start_gateway(gateway_config(worker_url, router=router)), traces


def ask(url: str, prompt: str) -> dict[str, Any]:
    client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=300)
    reply = client.chat.completions.create(
        model="auto",
        messages=[{"role": "user", "content": prompt}],
        max_tokens=8,
        temperature=0.7,
    )
    return reply.model_dump()


def wait_for_lines(path: Path, count: int, timeout_s: float = 10.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if path.exists():
            records = [json.loads(line) for line in path.read_text().splitlines()]
            if len(records) >= count:
                return records
        time.sleep(0.2)
    raise AssertionError(f"{path} did not reach {count} trace records")


def test_easy_and_hard_prompts_get_different_decisions(routed: tuple[str, Path]) -> None:
    url, traces = routed
    easy, hard = ask(url, EASY), ask(url, HARD)
    e, h = easy["ttc"], hard["ttc"]
    assert (e["band"], e["policy"]) == ("easy", "single")
    assert (h["band"], h["policy"]) == ("hard", "adaptive_bon")
    assert e["difficulty"] < 0.35 <= 0.65 <= h["difficulty"]
    assert 2 <= h["samples"] <= 3
    for reply in (easy, hard):
        reasons = reply["ttc"]["reasons"]
        assert any(r.startswith("probe: first-token entropy") for r in reasons)
        assert any(f"band {reply['ttc']['band']}" in r for r in reasons)
        probes = [d for d in reply["usage"]["ttc_details"] if d["kind"] == "probe"]
        assert len(probes) == 1 and probes[0]["completion_tokens"] == 1
        assert probes[0]["prompt_tokens"] > 0

    metrics = httpx.get(url + "/metrics", trust_env=False).text
    tier = "smollm2-135m"
    assert f'ttc_router_decisions_total{{band="easy",policy="single",tier="{tier}"}} 1.0' in metrics
    assert (
        f'ttc_router_decisions_total{{band="hard",policy="adaptive_bon",tier="{tier}"}} 1.0'
        in metrics
    )
    assert 'ttc_router_probe_tokens_total{direction="completion"} 2.0' in metrics
    assert (
        'ttc_tokens_total{direction="completion",kind="probe",tier="smollm2-135m"} 2.0' in metrics
    )

    records = wait_for_lines(traces, 2)
    assert [r["band"] for r in records] == ["easy", "hard"]
    assert all("prompt" not in r and r["probe_tokens"] > 0 for r in records)
    assert EASY not in traces.read_text() and "farmer" not in traces.read_text()
