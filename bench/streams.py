"""``ttc bench streams``: how soon a streamed answer shows life, per policy, against ``single``.

Each policy answers REQUESTS streamed chat requests through a gateway in front of a real worker
(the tier and the policy pinned, so no router probe), one request at a time, the policies
interleaved request by request so that drift on a shared CPU hits each of them alike. Timed
from sending the request, per request:

- first byte: the first line of the response body (the role chunk, a progress chunk or a
  keep-alive comment: whatever tells a client and its proxies that the gateway is alive);
- first progress: the first chunk carrying ``ttc.progress`` (a multi-sample policy's round);
- first content: the first chunk with a non-empty ``delta.content``;
- total: the end of the stream.

The report holds p50 and mean of each in milliseconds, each policy's p50 first byte and first
content over ``single``'s from the same run, and the mean time of a round (the last progress
event's time over its round number), which the first byte is to be compared with.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml
from rich.console import Console
from rich.table import Table

from bench import processes
from bench.stats import latency_summary, percentile, ratio

# adaptive_bon and cascade twice: with their defaults (on an easy question a confident greedy
# first sample answers alone: one round, the progress and the answer together), and made to
# take several rounds (gate off, the Beta rule at 0.99 whatever the difficulty: 2-0, 4-0 and
# 6-0 votes give 0.875, 0.969, 0.992, so three rounds of two when they agree; escalate_below
# 1.0: always escalate), where progress is said before the answer.
POLICIES = (
    "single",
    "adaptive_bon",
    "adaptive_bon:single_sample_confidence=null:confidence=0.99:difficulty_prior=0:max_samples=8",
    "cascade",
    "cascade:escalate_below=1.0",
    "speculative",
    "convergence",
)
QUESTION = "What is the capital of Japan?"


@dataclass(frozen=True)
class Options:
    upstream: str  # the worker's base URL (a gateway is started in front of it)
    model: str  # the model name the worker serves (also the tier's name)
    policies: tuple[str, ...] = POLICIES  # policy[:key=value...] (``ttc_of``)
    requests: int = 5
    max_tokens: int = 32
    gateway: str | None = None  # a running gateway instead (its tier named ``model``)


@dataclass
class Timing:
    """One streamed request's times in seconds from sending it (None: never happened)."""

    first_byte: float | None = None
    first_progress: float | None = None
    first_content: float | None = None
    total: float | None = None
    round_s: float | None = None  # the last progress's time over its round number
    rounds: int = 0  # the last progress's round number
    error: str | None = None


@dataclass
class Chunks:
    """What one stream's chunks said, as they arrived."""

    started: float
    timing: Timing = field(default_factory=Timing)

    def line(self, text: str) -> None:
        now = time.perf_counter() - self.started
        if self.timing.first_byte is None:
            self.timing.first_byte = now
        if not text.startswith("data: ") or text == "data: [DONE]":
            return
        chunk = json.loads(text[len("data: ") :])
        if "error" in chunk:
            self.timing.error = str(chunk["error"].get("code") or chunk["error"].get("type"))
        progress = (chunk.get("ttc") or {}).get("progress")
        if progress:
            self.timing.first_progress = self.timing.first_progress or now
            self.timing.rounds = max(int(progress["round"]), 1)
            self.timing.round_s = now / self.timing.rounds
        choices = chunk.get("choices") or [{}]
        if self.timing.first_content is None and (choices[0].get("delta") or {}).get("content"):
            self.timing.first_content = now


def ttc_of(spec: str) -> dict[str, Any]:
    """``policy[:key=value...]`` as the request's ``ttc`` (values read as YAML: null, 4, 0.9)."""
    name, *overrides = spec.split(":")
    ttc: dict[str, Any] = {"policy": name}
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"{spec!r}: expected policy[:key=value...]")
        ttc[key] = yaml.safe_load(value)
    return ttc


def body(options: Options, policy: str) -> dict[str, Any]:
    return {
        "model": options.model,
        "messages": [{"role": "user", "content": QUESTION}],
        "max_tokens": options.max_tokens,
        "stream": True,
        "stream_options": {"include_usage": True},
        "ttc": ttc_of(policy),
    }


async def measure(client: httpx.AsyncClient, url: str, payload: dict[str, Any]) -> Timing:
    seen = Chunks(time.perf_counter())
    async with client.stream("POST", url + "/v1/chat/completions", json=payload) as response:
        if response.status_code != 200:
            await response.aread()
            return Timing(error=f"HTTP {response.status_code}")
        async for text in response.aiter_lines():
            seen.line(text)
    seen.timing.total = time.perf_counter() - seen.started
    return seen.timing


async def drive(url: str, options: Options, console: Console) -> dict[str, list[Timing]]:
    timings: dict[str, list[Timing]] = {policy: [] for policy in options.policies}
    async with httpx.AsyncClient(timeout=600.0, trust_env=False) as client:
        for index in range(options.requests):
            for policy in options.policies:
                timing = await measure(client, url, body(options, policy))
                timings[policy].append(timing)
                console.log(
                    f"{policy} #{index + 1}: first byte {_ms(timing.first_byte)} ms,"
                    f" first content {_ms(timing.first_content)} ms"
                )
    return timings


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


def _times(timings: list[Timing], name: str) -> list[float]:
    return [v for t in timings if t.error is None and (v := getattr(t, name)) is not None]


def summarize(options: Options, timings: dict[str, list[Timing]]) -> dict[str, Any]:
    names = ("first_byte", "first_progress", "first_content", "total", "round_s")
    rows: dict[str, Any] = {}
    for policy, runs in timings.items():
        row: dict[str, Any] = {f"{name}_ms": latency_summary(_times(runs, name)) for name in names}
        row["errors"] = [t.error for t in runs if t.error is not None]
        row["rounds_mean"] = round(sum(t.rounds for t in runs) / max(len(runs), 1), 2)
        rows[policy] = row
    single = timings.get("single", [])
    for policy, row in rows.items():
        runs = timings[policy]
        row["vs_single"] = {
            name: ratio(percentile(_times(runs, name), 50), percentile(_times(single, name), 50))
            for name in ("first_byte", "first_content")
        }
    meta = {
        "question": QUESTION,
        "model": options.model,
        "requests": options.requests,
        "max_tokens": options.max_tokens,
        "policies": list(options.policies),
    }
    return {"meta": meta, "policies": rows}


def _start_gateway(options: Options, workdir: Path) -> processes.Started:
    port = processes.free_port()
    config = processes.gateway_config(options.model, options.upstream, port)
    (workdir / "gateway.yaml").write_text(yaml.safe_dump(config))
    serve = [sys.executable, "-m", "ttc.cli", "serve", "--config", str(workdir / "gateway.yaml")]
    return processes.start("ttc-gateway", serve, f"http://127.0.0.1:{port}", "/ready", workdir)


def run(options: Options, console: Console) -> dict[str, Any]:
    """Start a gateway in front of the worker (unless one is given), time the streams, stop it."""
    if options.gateway is not None:
        return summarize(options, asyncio.run(drive(options.gateway, options, console)))
    with tempfile.TemporaryDirectory(prefix="ttc-streams-") as folder:
        gateway = _start_gateway(options, Path(folder))
        try:
            return summarize(options, asyncio.run(drive(gateway.url, options, console)))
        finally:
            processes.stop(gateway)


def print_report(console: Console, report: dict[str, Any]) -> None:
    meta = report["meta"]
    table = Table(
        title=f"{meta['requests']} streamed requests per policy, max_tokens"
        f" {meta['max_tokens']}: p50 ms (x single)"
    )
    for column in (
        "policy",
        "first byte",
        "first progress",
        "first content",
        "total",
        "rounds",
        "round",
        "errors",
    ):
        left = column == "policy"
        table.add_column(column, justify="left" if left else "right", overflow="fold")
    for policy, row in report["policies"].items():
        ratios = row["vs_single"]
        table.add_row(
            policy,
            f"{row['first_byte_ms']['p50']} ({ratios['first_byte']})",
            str(row["first_progress_ms"]["p50"]),
            f"{row['first_content_ms']['p50']} ({ratios['first_content']})",
            str(row["total_ms"]["p50"]),
            str(row["rounds_mean"]),
            str(row["round_s_ms"]["p50"]),
            str(len(row["errors"])),
        )
    console.print(table)
