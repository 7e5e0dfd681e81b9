"""What a client of the gateway (``ttc serve``) sees when a worker fails mid-stream or 503s.

The workers are ``FakeUpstream`` servers (tests/reliability/fake_upstream.py) running on an
event loop in a background thread; the gateway is a real ``ttc serve`` subprocess.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from core.contract import prompt_estimate
from tests.integration.conftest import free_port, stop, ttc_cmd, wait_http
from tests.reliability.fake_upstream import MODEL, TOKENS, FakeUpstream

Gateway = tuple[str, dict[str, FakeUpstream]]
# One upstream call per request: the router would otherwise pick a sampling policy for these
# easy prompts, whose several non-streamed calls hide what a single call's failure looks like.
SINGLE = {"policy": "single"}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """Tier ``dying``: one fake that resets streams after 3 tokens. Tier ``flaky``: a fake
    answering 503 and a good one."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    def run(coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, loop).result(10)

    fakes = {name: run(FakeUpstream().start()) for name in ("dying", "bad", "good")}
    fakes["dying"].mode, fakes["bad"].mode = "die", "503"
    config = {
        "tiers": {
            "dying": {"model": MODEL, "endpoints": [fakes["dying"].url]},
            "flaky": {"model": MODEL, "endpoints": [fakes["bad"].url, fakes["good"].url]},
        },
        "pool": {"health_interval_s": 0.5, "affinity": "none"},
        # The pool's behaviour under one plain call per request: every band runs single.
        "router": {"bands": [{"name": "all", "policy": "single"}]},
    }
    folder: Path = tmp_path_factory.mktemp("gateway")
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    port = free_port()
    with (folder / "gateway.log").open("wb") as log:
        cmd = ttc_cmd("serve", "--config", str(folder / "config.yaml"), "--port", str(port))
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url + "/ready", 60.0, proc)
        yield url, fakes
    finally:
        stop(proc)
        for fake in fakes.values():
            run(fake.close())
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


def events(url: str, body: dict[str, Any]) -> list[Any]:
    with httpx.stream(
        "POST", url + "/v1/chat/completions", json=body, trust_env=False, timeout=30
    ) as response:
        assert response.status_code == 200
        lines = [ln[6:] for ln in response.iter_lines() if ln.startswith("data: ")]
    return [ln if ln == "[DONE]" else json.loads(ln) for ln in lines]


def test_worker_dying_mid_stream_gives_the_text_so_far_an_error_event_and_done(
    gateway: Gateway,
) -> None:
    url, _ = gateway
    body = {
        "model": "dying",
        "messages": [{"role": "user", "content": "hi"}],
        "stream": True,
        "ttc": SINGLE,
    }
    unbilled = unfinished_tokens(url)
    got = events(url, body)
    text = "".join(
        (c["delta"].get("content") or "") for e in got[:-2] for c in e.get("choices", [])
    )
    assert text == "xxx"
    error = got[-2]["error"]
    assert error["code"] == "stream_interrupted" and "usage so far" in error["message"]
    assert got[-1] == "[DONE]"
    # The three tokens were generated after the worker took the prompt in (never reported:
    # estimated): the failed request is billed them all the same.
    prompt = prompt_estimate({"messages": body["messages"]})
    assert unfinished_tokens(url) - unbilled == 3 + prompt


def unfinished_tokens(url: str) -> float:
    text = httpx.get(url + "/metrics", trust_env=False).text
    found = re.findall(r'ttc_unfinished_tokens_total\{outcome="error"\} (\S+)', text)
    return sum(float(v) for v in found)


def test_a_503_from_one_worker_is_invisible_to_the_client(gateway: Gateway) -> None:
    url, fakes = gateway
    body = {"model": "flaky", "messages": [{"role": "user", "content": "hi"}], "ttc": SINGLE}
    sent = 0
    while fakes["bad"].chats < 2 and sent < 40:  # the choice is random: until bad was hit twice
        response = httpx.post(url + "/v1/chat/completions", json=body, trust_env=False)
        sent += 1
        assert response.status_code == 200, response.text
        assert response.json()["choices"][0]["message"]["content"] == "x" * TOKENS
    assert fakes["bad"].chats == 2 and fakes["good"].finished == sent
