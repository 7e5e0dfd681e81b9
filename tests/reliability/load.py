"""A mixed load on the gateway while a fault happens, and its figures by phase.

``Load`` runs ``clients`` closed-loop clients, alternating streamed and non-streamed chat
requests, until stopped; every request is one ``Outcome``. A streamed request succeeded only
if it ended with ``[DONE]`` and carried no error event; one cut by a dying worker (text so far,
an error event, ``[DONE]``) is ``interrupted``; one whose text is not the answer the upstream
gives (``expect``, when known) is ``garbled``. ``phases`` splits outcomes by the time each
request started (before / during / after a fault) into counts and latency percentiles.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from bench.stats import percentile


@dataclass(frozen=True)
class Outcome:
    started: float  # time.monotonic()
    latency_s: float
    stream: bool
    result: str  # ok | interrupted | HTTP <status> | an exception's name
    retry_after: str | None = None

    @property
    def ok(self) -> bool:
        return self.result == "ok"


def chat_body(model: str, stream: bool) -> dict[str, Any]:
    return {
        "model": model,
        "messages": [{"role": "user", "content": "hi"}],
        "stream": stream,
        "max_tokens": 16,
        "ttc": {"policy": "single"},
    }


async def one_request(
    client: httpx.AsyncClient, model: str, stream: bool, expect: str | None = None
) -> Outcome:
    """Send one chat request and classify how it ended (``garbled``: its answer is not
    ``expect``)."""
    started = time.monotonic()
    try:
        if stream:
            result, hint = await _streamed(client, chat_body(model, True), expect)
        else:
            response = await client.post("/v1/chat/completions", json=chat_body(model, False))
            result = "ok" if response.status_code == 200 else f"HTTP {response.status_code}"
            hint = response.headers.get("retry-after")
            if result == "ok" and expect is not None:
                text = response.json()["choices"][0]["message"]["content"]
                result = "ok" if text == expect else "garbled"
    except httpx.HTTPError as exc:
        result, hint = type(exc).__name__, None
    return Outcome(started, time.monotonic() - started, stream, result, hint)


async def _streamed(
    client: httpx.AsyncClient, body: dict[str, Any], expect: str | None
) -> tuple[str, str | None]:
    async with client.stream("POST", "/v1/chat/completions", json=body) as response:
        if response.status_code != 200:
            await response.aread()
            return f"HTTP {response.status_code}", response.headers.get("retry-after")
        done, errored, text = False, False, []
        async for line in response.aiter_lines():
            if line == "data: [DONE]":
                done = True
            elif line.startswith("data: "):
                chunk = json.loads(line[6:])
                errored = errored or "error" in chunk
                for choice in chunk.get("choices") or []:
                    text.append((choice.get("delta") or {}).get("content") or "")
    if errored:
        return "interrupted", None
    if done and expect is not None and "".join(text) != expect:
        return "garbled", None
    return ("ok" if done else "no [DONE]"), None


@dataclass
class Load:
    """``clients`` clients sending back to back (a short pause after a failure)."""

    url: str
    model: str
    clients: int
    expect: str | None = None  # every answer's text, when the upstream's is known
    outcomes: list[Outcome] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._client(i)) for i in range(self.clients)]

    async def stop(self) -> list[Outcome]:
        self._stop.set()
        await asyncio.gather(*self._tasks)
        return self.outcomes

    async def _client(self, index: int) -> None:
        timeout = httpx.Timeout(30.0, connect=5.0)
        async with httpx.AsyncClient(base_url=self.url, timeout=timeout, trust_env=False) as client:
            stream = index % 2 == 1
            while not self._stop.is_set():
                outcome = await one_request(client, self.model, stream, self.expect)
                self.outcomes.append(outcome)
                stream = not stream
                if not outcome.ok:
                    await asyncio.sleep(0.05)  # 50 ms: a client backing off, not a busy loop


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000, 1)


def summary(outcomes: Sequence[Outcome]) -> dict[str, Any]:
    """Counts by result and kind, p50/p99 latency (ms) of the successful requests."""
    latencies = [o.latency_s for o in outcomes if o.ok]
    failures: dict[str, int] = {}
    for o in outcomes:
        if not o.ok:
            key = f"{'stream' if o.stream else 'call'}: {o.result}"
            failures[key] = failures.get(key, 0) + 1
    return {
        "requests": len(outcomes),
        "failed": sum(not o.ok for o in outcomes),
        "failed_calls": sum(not o.ok and not o.stream for o in outcomes),
        "failed_streams": sum(not o.ok and o.stream for o in outcomes),
        "failures": failures,
        "p50_ms": _ms(percentile(latencies, 50)),
        "p99_ms": _ms(percentile(latencies, 99)),
    }


def phases(outcomes: Sequence[Outcome], marks: Sequence[tuple[str, float]]) -> dict[str, Any]:
    """Outcomes split at ``marks`` ((name, time it began), in order) by their start time."""
    bounds = [*(t for _, t in marks[1:]), float("inf")]
    return {
        name: summary([o for o in outcomes if begin <= o.started < end])
        for (name, begin), end in zip(marks, bounds, strict=True)
    }
