"""Load signals read from each worker's Prometheus ``/metrics``, where its engine has them.

The gauges are the engine's (``workers.engines.LoadGauges``): vLLM exports
``vllm:num_requests_running``, ``vllm:num_requests_waiting`` and the fraction of its KV cache in
use, ``vllm:kv_cache_usage_perc`` (``vllm:gpu_cache_usage_perc`` before v0.10); SGLang its
``sglang:`` equivalents. An engine without load metrics (the llama.cpp server, hosted APIs) is
not scraped. A worker may run several engines (data parallel) or serve under several names:
the queue counts are summed over label sets and the KV usage is the fullest engine's.

A signal is a snapshot. ``SignalBoard.fresh`` returns it only while it is younger than
``max_age_s``; after that the worker's load is *unknown* (its metrics endpoint is slow or
gone), which the balancer must not read as idle.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import httpx

from workers.engines.base import LoadGauges
from workers.engines.vllm import GAUGES as VLLM_GAUGES

# name, optional {labels} (quoted values may hold braces), value
_SAMPLE = re.compile(r'^([a-zA-Z_:][\w:]*)(?:\{(?:[^"}]|"(?:[^"\\]|\\.)*")*\})?\s+(\S+)')


@dataclass(frozen=True)
class WorkerLoad:
    running: float
    waiting: float
    kv_usage: float | None  # 0..1; None when the worker exports neither KV metric
    at: float  # clock time of the scrape


def parse_vllm_metrics(text: str, at: float) -> WorkerLoad | None:
    """The load in a vLLM ``/metrics`` page; None if it has no vLLM queue gauges at all."""
    return parse_metrics(text, at, VLLM_GAUGES)


def parse_metrics(text: str, at: float, gauges: LoadGauges) -> WorkerLoad | None:
    """The load in a ``/metrics`` page; None if it has none of the queue ``gauges``."""
    sums: dict[str, float] = {}
    peaks: dict[str, float] = {}
    wanted = {gauges.running, gauges.waiting, *gauges.kv_usage}
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match is None:
            continue
        name, raw = match.groups()
        if name not in wanted:
            continue
        try:
            value = float(raw)
        except ValueError:
            continue
        if math.isfinite(value):
            sums[name] = sums.get(name, 0.0) + value
            peaks[name] = max(peaks.get(name, value), value)
    if gauges.running not in sums and gauges.waiting not in sums:
        return None
    kv = next((peaks[n] for n in gauges.kv_usage if n in peaks), None)
    return WorkerLoad(sums.get(gauges.running, 0.0), sums.get(gauges.waiting, 0.0), kv, at)


async def scrape(
    http: httpx.AsyncClient,
    url: str,
    timeout_s: float,
    clock: Callable[[], float],
    gauges: LoadGauges = VLLM_GAUGES,
    headers: Mapping[str, str] | None = None,
) -> WorkerLoad | None:
    """One scrape of ``url/metrics`` (``url``: the server root); None when it fails (the old
    signal then ages out)."""
    try:
        response = await http.get(url + "/metrics", timeout=timeout_s, headers=headers)
    except httpx.HTTPError:
        return None
    if response.status_code != 200:
        return None
    return parse_metrics(response.text, clock(), gauges)


class SignalBoard:
    """The latest signal per worker URL, and whether it is still fresh enough to trust."""

    def __init__(self, max_age_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_age_s = max_age_s
        self._clock = clock
        self._latest: dict[str, WorkerLoad] = {}

    def update(self, url: str, signal: WorkerLoad) -> None:
        self._latest[url] = signal

    def fresh(self, url: str) -> WorkerLoad | None:
        signal = self._latest.get(url)
        if signal is None or self._clock() - signal.at > self.max_age_s:
            return None
        return signal

    def forget(self, url: str) -> None:
        self._latest.pop(url, None)
