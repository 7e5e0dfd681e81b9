"""``ttc bench overhead``: what the gateway itself costs, against the upstream and LiteLLM.

One run starts (or is given) an upstream, starts a gateway with policy ``single`` in front of it
and, when its binary is given, LiteLLM's proxy in front of the same upstream; then sends each
load (closed loop at a fixed concurrency and open loop at a fixed rate, each non-streamed and
streamed) to the upstream directly, through the gateway and through LiteLLM, one after the
other, with unmeasured warm-up requests first. Per target and load it records latency and
time-to-first-token percentiles, throughput, the proxy's CPU time (its whole process tree) per
request and requests per CPU-second, and peak RSS. ``compare`` derives the added latency and
TTFT of each proxy over the direct path and LiteLLM-to-gateway ratios.
"""

from __future__ import annotations

import asyncio
import resource
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from bench import loadgen
from bench.procstat import tree_usage
from bench.stats import difference, latency_summary, ratio

PROMPT = "What is the capital of France? Answer with just the city name."


@dataclass(frozen=True)
class Load:
    """One load shape: ``mode`` is "concurrency" (closed loop) or "rate" (open loop)."""

    mode: str
    stream: bool
    concurrency: int
    rate: float
    requests: int
    warmup: int

    @property
    def name(self) -> str:
        shape = f"c={self.concurrency}" if self.mode == "concurrency" else f"{self.rate:g}/s"
        return f"{shape} {'stream' if self.stream else 'plain'}"


@dataclass(frozen=True)
class Proxy:
    """A target: ``pid`` is the root of the process tree whose CPU is counted (None: direct)."""

    name: str
    url: str
    headers: Mapping[str, str]
    pid: int | None = None


def request_body(model: str, max_tokens: int, stream: bool) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": model,
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": max_tokens,
        "temperature": 0.0,  # greedy: a real upstream then generates the same tokens every time
    }
    if stream:
        body |= {"stream": True, "stream_options": {"include_usage": True}}
    return body


async def _drive(target: loadgen.Target, load: Load, requests: int) -> loadgen.Run:
    if load.mode == "concurrency":
        return await loadgen.closed_loop(target, load.concurrency, requests)
    return await loadgen.open_loop(target, load.rate, requests)


def _client_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def measure(proxy: Proxy, load: Load, model: str, max_tokens: int) -> dict[str, Any]:
    """Warm up, then run ``load`` against ``proxy``; latency in ms, CPU over its process tree."""
    target = loadgen.Target(proxy.url, request_body(model, max_tokens, load.stream), proxy.headers)
    if load.warmup:
        await _drive(target, load, load.warmup)
    before = tree_usage(proxy.pid) if proxy.pid else None
    client_before = _client_cpu_s()
    run = await _drive(target, load, load.requests)
    client_cpu = _client_cpu_s() - client_before
    ok = [s for s in run.samples if s.ok]
    result: dict[str, Any] = {
        "target": proxy.name,
        "load": load.name,
        "requests": len(run.samples),
        "errors": len(run.samples) - len(ok),
        "failures": dict(Counter(s.failure for s in run.samples if not s.ok)),
        "wall_s": round(run.wall_s, 3),
        "throughput_rps": round(len(ok) / run.wall_s, 2) if run.wall_s else None,
        "latency_ms": latency_summary([s.latency_s for s in ok]),
        "ttft_ms": latency_summary([s.ttft_s for s in ok if s.ttft_s is not None])
        if load.stream
        else None,
        "client_cpu_ms_per_request": round(client_cpu * 1000 / max(len(run.samples), 1), 3),
    }
    if proxy.pid and before is not None:
        after = tree_usage(proxy.pid)
        cpu = after.cpu_s - before.cpu_s
        result |= {
            "proxy_cpu_s": round(cpu, 3),
            "proxy_cpu_ms_per_request": round(cpu * 1000 / max(len(run.samples), 1), 3),
            "requests_per_cpu_second": round(len(run.samples) / cpu, 1) if cpu > 0 else None,
            "peak_rss_mb": round(after.peak_rss_bytes / 2**20, 1),
            "processes": after.processes,
        }
    return result


def _pick(results: Sequence[Mapping[str, Any]], name: str) -> Mapping[str, Any] | None:
    return next((r for r in results if r["target"] == name), None)


def _p(result: Mapping[str, Any] | None, metric: str, q: str) -> float | None:
    section = (result or {}).get(metric) or {}
    value = section.get(q)
    return float(value) if value is not None else None


def compare(results: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Added latency/TTFT of each proxy over direct, and LiteLLM / gateway ratios, for one load."""
    direct = _pick(results, "direct")
    out: dict[str, Any] = {}
    for name in ("ttc", "litellm"):
        proxy = _pick(results, name)
        if proxy is None:
            continue
        out[name] = {
            f"added_{metric}_{q}_ms": difference(
                _p(proxy, f"{metric}_ms", q), _p(direct, f"{metric}_ms", q)
            )
            for metric in ("latency", "ttft")
            for q in ("p50", "p99")
        }
    ttc, litellm = _pick(results, "ttc"), _pick(results, "litellm")
    if ttc is not None and litellm is not None:
        out["litellm_over_ttc"] = {
            key: ratio(litellm.get(key), ttc.get(key))
            for key in ("proxy_cpu_ms_per_request", "peak_rss_mb")
        } | {
            "added_latency_p50": ratio(
                out["litellm"]["added_latency_p50_ms"], out["ttc"]["added_latency_p50_ms"]
            ),
        }
    return out


def loads(
    concurrencies: Sequence[int],
    rates: Sequence[float],
    requests: int,
    warmup: int,
    modes: Sequence[str],
    streams: Sequence[bool],
) -> list[Load]:
    """Each closed-loop concurrency, then each open-loop rate, each plain then streamed."""
    shapes = [("concurrency", c, 0.0) for c in concurrencies if "concurrency" in modes]
    shapes += [("rate", 0, r) for r in rates if "rate" in modes]
    return [
        Load(mode, stream, concurrency, rate, requests, warmup)
        for mode, concurrency, rate in shapes
        for stream in streams
    ]


async def run_loads(
    proxies: Sequence[Proxy], decision: Sequence[Load], model: str, max_tokens: int, on_result: Any
) -> list[dict[str, Any]]:
    """Every load against every proxy, in that order; ``on_result`` sees each result."""
    by_load: list[dict[str, Any]] = []
    for load in decision:
        results = []
        for proxy in proxies:
            result = await measure(proxy, load, model, max_tokens)
            on_result(result)
            results.append(result)
        by_load.append(
            {
                "load": asdict(load) | {"name": load.name},
                "results": results,
                "comparison": compare(results),
            }
        )
    return by_load


async def idle_cpu(proxies: Sequence[Proxy], seconds: float) -> dict[str, float]:
    """Each proxy's CPU while no request arrives, in ms per second (health checks, timers).

    At a low request rate this background cost is a visible share of the CPU per request.
    """
    before = {p.name: tree_usage(p.pid).cpu_s for p in proxies if p.pid}
    await asyncio.sleep(seconds)
    return {
        p.name: round((tree_usage(p.pid).cpu_s - before[p.name]) * 1000 / seconds, 2)
        for p in proxies
        if p.pid
    }
