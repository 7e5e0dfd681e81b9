"""``ttc serve --processes 2``: two gateway processes on one port sharing a real Redis.

The upstream is ``bench.fast_upstream``, a fake: what is under test is the gateway's process
model (connections spread over the processes, ``/metrics`` merged across them, limits held
in Redis), which does not depend on what generates the tokens, and a real vLLM worker would
only make the forty requests below slow on this shared machine.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from state.keys import hash_key
from tests.integration.conftest import (
    GATEWAY_STARTUP_S,
    RedisServer,
    free_port,
    stop,
    ttc_cmd,
    wait_http,
)
from ttc.processes import PROCESS_HEADER

KEYS = {"bulk": "sk-test-bulk-41c2", "limited": "sk-test-limited-9e07"}
RPM = 3


def _config(upstream: str, redis_url: str) -> dict[str, Any]:
    keys = [
        {"name": "bulk", "key_hash": hash_key(KEYS["bulk"])},
        {"name": "limited", "key_hash": hash_key(KEYS["limited"]), "rpm": RPM},
    ]
    return {
        "server": {"log_level": "warning"},
        "tiers": {"fast": {"model": "fast", "endpoints": [upstream]}},
        "policies": {"default": "single"},
        "router": {"bands": [{"name": "all", "policy": "single"}]},
        "redis": {"url": redis_url, "key_prefix": "ttc-processes-test:"},
        "auth": {"enabled": True, "keys": keys},
    }


def _start(cmd: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


@pytest.fixture(scope="module")
def group(tmp_path_factory: pytest.TempPathFactory, redis_server: RedisServer) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("processes")
    up_port, port = free_port(), free_port()
    upstream = _start(
        [sys.executable, "-m", "bench.fast_upstream", "--port", str(up_port)], folder / "up.log"
    )
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(_config(f"http://127.0.0.1:{up_port}", redis_server.url)))
    cmd = ttc_cmd("serve", "--config", str(path), "--port", str(port), "--processes", "2")
    gateway = _start(cmd, folder / "gateway.log")
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"http://127.0.0.1:{up_port}/health", 10.0, upstream)
        wait_http(url + "/ready", GATEWAY_STARTUP_S, gateway)
        yield url
    finally:
        stop(gateway)
        stop(upstream)


def _chat(url: str, key: str) -> httpx.Response:
    """One request on a new connection (the kernel picks the process per connection)."""
    body = {"model": "fast", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}
    headers = {"authorization": f"Bearer {KEYS[key]}"}
    return httpx.post(url + "/v1/chat/completions", json=body, headers=headers, trust_env=False)


def _metric(url: str, name: str, **labels: str) -> float:
    text = httpx.get(url + "/metrics", trust_env=False, timeout=10).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    )


def test_requests_spread_and_metrics_count_each_once(group: str) -> None:
    before = _metric(group, "ttc_requests_total", status="ok")
    answers = [_chat(group, "bulk") for _ in range(40)]
    assert all(a.status_code == 200 for a in answers)
    assert {a.headers[PROCESS_HEADER] for a in answers} == {"0", "1"}
    # Whichever process answers the scrape, it counts every request of both exactly once.
    for _ in range(4):
        assert _metric(group, "ttc_requests_total", status="ok") == before + 40


def test_rpm_holds_across_the_processes(group: str) -> None:
    seen: set[str] = set()
    for _ in range(RPM):
        answer = _chat(group, "limited")
        assert answer.status_code == 200
        seen.add(answer.headers[PROCESS_HEADER])
    refused = [_chat(group, "limited") for _ in range(6)]
    assert all(r.status_code == 429 for r in refused)
    assert {r.headers[PROCESS_HEADER] for r in refused} | seen == {"0", "1"}
    assert _metric(group, "ttc_rate_limited_total", reason="rpm") == 6
