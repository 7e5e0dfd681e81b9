"""Where the gateway's CPU goes per request: ``python -m bench.hot_path [--requests 500]``.

Starts ``bench.fast_upstream`` in a subprocess (so its own CPU stays out of the profile),
builds the gateway app in this process with one tier on it and policy ``single`` (as ``ttc
bench overhead`` does), and calls the ASGI app directly, without a socket or an HTTP client,
for a plain and then a streamed chat request, ``--requests`` times each after a warm-up, under
cProfile. It prints the CPU per request and the self time of every module, with the time of
C functions (``json.dumps``, ``dict.get``, ...) charged to the Python module that called them,
grouped under the stage of the request they belong to (validation, router, lifecycle,
metering, settlement, metrics, SSE framing, the upstream client, the framework, the event
loop). It asserts nothing: the numbers move with the machine, the breakdown is what to read.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import pstats
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.processes import free_port, start, stop

# Module prefixes to the stage of a request they do; the first match wins (order matters).
STAGES = (
    ("server.api.common.stream", "SSE framing"),
    ("server.api.chat.stream", "SSE framing"),
    ("server.api.completions.stream", "SSE framing"),
    ("server.api", "validation and rendering"),
    ("pydantic", "validation and rendering"),
    ("router", "router (features, predictor)"),
    ("core.calibration", "metering"),  # the prompt estimate of contracts and reservations
    ("server.settlement", "settlement, limits (state)"),
    ("server.lifecycle", "lifecycle"),
    ("core.metering", "metering"),
    ("core.usage", "metering"),
    ("state", "settlement, limits (state)"),
    ("server.metrics", "metrics"),
    ("prometheus_client", "metrics"),
    ("policies", "policy"),
    ("workers", "upstream client"),
    ("aiohttp", "upstream client"),
    ("yarl", "upstream client"),
    ("multidict", "upstream client"),
    ("opentelemetry", "tracing"),
    ("server", "gateway, other"),
    ("core", "gateway, other"),
    ("fastapi", "framework (FastAPI, Starlette)"),
    ("starlette", "framework (FastAPI, Starlette)"),
    ("anyio", "framework (FastAPI, Starlette)"),
    ("asyncio", "event loop"),
    ("json", "json"),
    ("orjson", "json"),
    ("bench.hot_path", "the driver (not the gateway)"),
)
SITE = tuple(sorted((p for p in sys.path if p), key=len, reverse=True))


def module_of(filename: str) -> str:
    """``.../server/lifecycle.py`` -> ``server.lifecycle``; C functions -> ``~``."""
    if filename == "~" or not filename.endswith(".py"):
        return "~"
    for root in SITE:
        if filename.startswith(root + "/"):
            dotted = filename[len(root) + 1 : -3].replace("/", ".")
            return dotted.removesuffix(".__init__")
    return Path(filename).stem


def stage_of(module: str) -> str:
    for prefix, stage in STAGES:
        if module == prefix or module.startswith(prefix + "."):
            return stage
    return "other libraries"


def self_time_by_module(stats: pstats.Stats) -> dict[str, float]:
    """Self seconds per module; a C function's time goes to its callers, pro rata."""
    totals: dict[str, float] = defaultdict(float)
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    for (filename, _, _), (_, _, self_s, _, callers) in raw.items():
        module = module_of(filename)
        if module != "~" or not callers:
            totals[module] += self_s
            continue
        spent = sum(c[2] for c in callers.values()) or 1.0
        for (caller_file, _, _), caller in callers.items():
            totals[module_of(caller_file)] += self_s * caller[2] / spent
    return totals


def settings(upstream: str) -> Any:
    from server.config import settings_from_dict

    return settings_from_dict(
        {
            "server": {"log_level": "warning"},
            "tiers": {"fast": {"model": "fast", "endpoints": [upstream]}},
            "policies": {"default": "single"},
            "router": {"bands": [{"name": "all", "policy": "single"}]},
        }
    )


async def call(app: Any, body: bytes) -> int:
    """One POST /v1/chat/completions through the ASGI app; the status."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/chat/completions",
        "raw_path": b"/v1/chat/completions",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-type", b"application/json"), (b"host", b"bench")],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 8000),
    }
    sent = False
    status = 0

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            await asyncio.sleep(3600)  # no disconnect while the answer is written
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


async def profile(app: Any, stream: bool, requests: int) -> tuple[pstats.Stats, float]:
    body = json.dumps(
        {
            "model": "fast",
            "messages": [{"role": "user", "content": "What is the capital of France?"}],
            "max_tokens": 16,
            "stream": stream,
        }
    ).encode()
    for _ in range(50):  # warm-up: connections, caches, lazy imports
        assert await call(app, body) == 200
    cpu = time.process_time()
    for _ in range(requests):  # unprofiled: what a request costs without cProfile's overhead
        await call(app, body)
    cpu_s = (time.process_time() - cpu) / requests
    # CPU time, not wall time: waiting for the upstream in select() is not the gateway's cost.
    profiler = cProfile.Profile(time.process_time)
    profiler.enable()
    for _ in range(requests):
        await call(app, body)
    profiler.disable()
    return pstats.Stats(profiler), cpu_s


def report(title: str, stats: pstats.Stats, cpu_s: float) -> Iterator[str]:
    modules = self_time_by_module(stats)
    total = sum(modules.values()) or 1.0
    stages: dict[str, dict[str, float]] = defaultdict(dict)
    for module, seconds in modules.items():
        stages[stage_of(module)][module] = seconds
    yield f"\n== {title}: {cpu_s * 1e3:.3f} ms CPU per request unprofiled; shares of it:"
    for stage, members in sorted(stages.items(), key=lambda kv: -sum(kv[1].values())):
        share = sum(members.values())
        yield f"{100 * share / total:5.1f}%  {stage}"
        for module, seconds in sorted(members.items(), key=lambda kv: -kv[1])[:4]:
            yield f"         {100 * seconds / total:5.1f}%  {module}"


async def main(requests: int) -> None:
    from server.app import create_app

    with tempfile.TemporaryDirectory() as folder:
        port = free_port()
        command = [sys.executable, "-m", "bench.fast_upstream", "--port", str(port)]
        url = f"http://127.0.0.1:{port}"
        upstream = start("fast-upstream", command, url, "/health", Path(folder))
        try:
            app = create_app(settings(upstream.url))
            async with app.router.lifespan_context(app):
                for stream in (False, True):
                    stats, cpu_s = await profile(app, stream, requests)
                    title = "streamed" if stream else "plain"
                    for line in report(title, stats, cpu_s):
                        print(line)
        finally:
            stop(upstream)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=500, help="profiled requests per kind")
    asyncio.run(main(parser.parse_args().requests))
