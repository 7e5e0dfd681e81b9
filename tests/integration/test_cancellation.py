"""A client that goes away stops the generation upstream.

vLLM does not count client aborts in ``request_success_total``; what shows the abort is its
``num_requests_running`` gauge falling to zero long before the 1500-token generation could end.
"""

from __future__ import annotations

import re
import time

import httpx

LONG = {
    "model": "auto",
    "messages": [{"role": "user", "content": "Write a very long story about a dragon."}],
    "max_tokens": 1500,
    "temperature": 1.0,
    "ignore_eos": True,
}


def running(worker_url: str) -> float:
    """Requests vLLM is generating or queueing (an aborted one leaves both at once)."""
    text = httpx.get(worker_url + "/metrics", trust_env=False).text
    found = re.findall(r"vllm:num_requests_(?:running|waiting)\{[^}]*\} (\S+)", text)
    return sum(float(v) for v in found)


def wait_until_idle(worker_url: str, timeout_s: float = 15.0) -> bool:
    """True once the worker is idle; the 1500-token story would otherwise run for a minute."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if running(worker_url) == 0:
            return True
        time.sleep(0.25)
    return False


def test_stream_disconnect_aborts_upstream(gateway: str, worker_url: str) -> None:
    with httpx.stream(
        "POST",
        gateway + "/v1/chat/completions",
        json={**LONG, "stream": True},
        trust_env=False,
        timeout=60,
    ) as response:
        lines = response.iter_lines()
        for _ in range(4):
            next(lines)
        assert running(worker_url) >= 1
    assert wait_until_idle(worker_url)


def test_non_stream_disconnect_aborts_upstream(gateway: str, worker_url: str) -> None:
    try:
        httpx.post(gateway + "/v1/chat/completions", json=LONG, trust_env=False, timeout=2.0)
    except httpx.ReadTimeout:
        pass
    assert wait_until_idle(worker_url)


def unfinished(gateway: str) -> float:
    text = httpx.get(gateway + "/metrics", trust_env=False).text
    found = re.findall(r'ttc_unfinished_tokens_total\{outcome="disconnect"\} (\S+)', text)
    return sum(float(v) for v in found)


def test_a_client_that_leaves_is_still_billed_the_chain_generated_so_far(
    gateway: str, worker_url: str
) -> None:
    """``convergence`` streams its chain upstream even for a non-stream client, so the tokens
    generated before the client left are known; they show in the unfinished-token counter
    (and are charged to the caller's limits, see test_redis_state)."""
    before = unfinished(gateway)
    ttc = {"policy": "convergence", "probe_every": 4096}  # no probe ends the story early
    body = {**LONG, "model": "small", "ttc": ttc}
    try:
        httpx.post(gateway + "/v1/chat/completions", json=body, trust_env=False, timeout=3.0)
    except httpx.ReadTimeout:
        pass
    assert wait_until_idle(worker_url)
    deadline = time.monotonic() + 5.0
    while unfinished(gateway) <= before:
        assert time.monotonic() < deadline, "the abandoned chain was never counted"
        time.sleep(0.1)
