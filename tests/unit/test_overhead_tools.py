"""Unit tests for the overhead bench's own tools: fast upstream, load generator, /proc reader.

The load generator runs against the fast upstream in this process, on loopback, for a handful of
requests: it checks the parsing the bench's numbers depend on (content-length and chunked bodies,
time to first content token), not performance.
"""

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator

import pytest

from bench import loadgen
from bench.fast_upstream import REPLY_TOKENS, UpstreamProtocol, completion, stream_events
from bench.overhead import compare, request_body
from bench.procstat import children_of, tree_usage


@pytest.fixture
async def upstream() -> AsyncIterator[str]:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: UpstreamProtocol(("fast",)), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()
        await server.wait_closed()


def test_fast_upstream_answers_like_an_openai_server() -> None:
    body = completion({"model": "fast", "n": 2, "logprobs": True})
    assert [c["message"]["content"] for c in body["choices"]] == ["".join(REPLY_TOKENS)] * 2
    assert body["usage"]["completion_tokens"] == 2 * len(REPLY_TOKENS)
    assert len(body["choices"][0]["logprobs"]["content"]) == len(REPLY_TOKENS)
    events = stream_events({"model": "fast", "stream_options": {"include_usage": True}})
    assert events[-1] == b"data: [DONE]\n\n"
    assert b'"usage"' in events[-2]


async def test_closed_loop_reads_plain_and_streamed_responses(upstream: str) -> None:
    for stream in (False, True):
        target = loadgen.Target(upstream, request_body("fast", 16, stream), {})
        run = await loadgen.closed_loop(target, concurrency=3, requests=10)
        assert len(run.samples) == 10
        assert all(s.ok for s in run.samples)
        for sample in run.samples:
            assert (sample.ttft_s is not None) is stream
            assert sample.ttft_s is None or 0 < sample.ttft_s <= sample.latency_s


async def test_open_loop_paces_requests(upstream: str) -> None:
    target = loadgen.Target(upstream, request_body("fast", 16, False), {})
    run = await loadgen.open_loop(target, rate=100.0, requests=10)
    assert len(run.samples) == 10 and all(s.ok for s in run.samples)
    assert run.wall_s >= 0.09  # the 10th request is scheduled 90 ms after the first


async def test_errors_are_counted_not_raised(upstream: str) -> None:
    target = loadgen.Target(upstream + "/missing", request_body("fast", 16, False), {})
    run = await loadgen.closed_loop(target, concurrency=1, requests=3)
    assert [(s.ok, s.failure) for s in run.samples] == [(False, "HTTP 404")] * 3


def test_tree_usage_includes_children() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert child.pid in children_of(os.getpid())
        usage = tree_usage(os.getpid())
        assert usage.processes >= 2
        assert usage.cpu_s > 0
        assert usage.peak_rss_bytes > 10 * 2**20
    finally:
        child.kill()
        child.wait()


def test_compare_reports_added_latency_and_ratios() -> None:
    def result(name: str, p50: float, cpu: float | None) -> dict[str, object]:
        return {
            "target": name,
            "latency_ms": {"p50": p50, "p99": p50 * 2},
            "ttft_ms": None,
            "proxy_cpu_ms_per_request": cpu,
            "peak_rss_mb": 100.0 if cpu else None,
        }

    out = compare(
        [result("direct", 1.0, None), result("ttc", 1.5, 0.5), result("litellm", 6.0, 10.0)]
    )
    assert out["ttc"]["added_latency_p50_ms"] == 0.5
    assert out["ttc"]["added_latency_p99_ms"] == 1.0
    assert out["ttc"]["added_ttft_p50_ms"] is None
    assert out["litellm"]["added_latency_p50_ms"] == 5.0
    assert out["litellm_over_ttc"] == {
        "proxy_cpu_ms_per_request": 20.0,
        "peak_rss_mb": 1.0,
        "added_latency_p50": 10.0,
    }
