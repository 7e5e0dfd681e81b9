"""Trace records of routed requests, and a JSONL sink that writes them off the event loop.

One record per finished request: features, predictor scores, decision and answer shape,
samples used, answer agreement among samples, the first sample's answer and the final one,
tokens, latency, and the request's ``trace_id`` when tracing is on (the OpenTelemetry trace
that holds its spans). Never the prompt text unless
``traces.include_prompt``; by default the hashed n-gram ids instead (bucket numbers, enough
for ``ttc router train`` to refit on the same hashing space). Agreement is the leader's share
of the votes, a difficulty label that needs no ground truth.

``TraceSink.emit`` never blocks: records go to a bounded queue drained by one writer thread;
when the writer falls behind by ``traces.buffer`` records, new records are dropped and counted.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from core.request import Decision, GenRequest
from core.result import PolicyResult
from core.tracing import current_trace_id
from core.usage import TokenUsage
from router.config import TracesConfig
from router.features import prompt_text
from router.learned import DEFAULT_BUCKETS, hashed_ngrams

log = logging.getLogger("ttc.router")

_STOP = object()
# Records written per batch before a flush: bounds what a crash can lose without a syscall per line.
_BATCH = 256


def agreement(report: Mapping[str, Any]) -> float | None:
    """The leading answer's share of all samples, or None with fewer than two samples."""
    votes = report.get("votes")
    samples = report.get("samples")
    if not isinstance(votes, Mapping) or not votes or not isinstance(samples, int) or samples < 2:
        return None
    counts = [v for v in votes.values() if isinstance(v, int | float)]
    return round(max(counts) / samples, 4) if counts else None


class TraceSink:
    """Appends JSON lines to ``path``; ``close`` flushes what is queued and stops the writer."""

    def __init__(self, path: Path, buffer: int) -> None:
        self._path = path
        self._queue: queue.Queue[object] = queue.Queue(maxsize=buffer)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.written = 0
        self.dropped = 0

    def emit(self, record: Mapping[str, Any]) -> None:
        self._start()
        try:
            self._queue.put_nowait(dict(record))
        except queue.Full:
            self.dropped += 1

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="ttc-traces", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        try:
            self._write_until_stopped()
        except OSError as exc:
            log.error("trace writer stopped, records will be dropped: %s", exc)

    def _write_until_stopped(self) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        with self._path.open("a", encoding="utf-8") as out:
            while True:
                item = self._queue.get()
                batch = [item]
                while len(batch) < _BATCH and not self._queue.empty():
                    batch.append(self._queue.get_nowait())
                stop = any(entry is _STOP for entry in batch)
                lines = [json.dumps(e, separators=(",", ":")) for e in batch if e is not _STOP]
                if lines:
                    out.write("\n".join(lines) + "\n")
                    out.flush()
                    self.written += len(lines)
                if stop:
                    return

    def close(self, timeout_s: float = 5.0) -> None:
        """Blocking: run it in a thread (``asyncio.to_thread``) from async code."""
        with self._lock:
            thread = self._thread
        if thread is None:
            return
        try:
            self._queue.put(_STOP, timeout=timeout_s)
        except queue.Full:
            log.warning("trace writer stuck; %d records not written", self._queue.qsize())
            return
        thread.join(timeout_s)


def request_record(
    *,
    req: GenRequest,
    decision: Decision,
    result: PolicyResult,
    features: Mapping[str, float],
    scores: Mapping[str, float],
    latency_s: float,
    config: TracesConfig,
) -> dict[str, Any]:
    """The trace of one finished request (JSON-ready); prompt text only if config allows."""
    report = result.report
    total = result.usage.total
    probe = sum((u for kind, _, u in result.usage.items() if kind == "probe"), TokenUsage())
    record: dict[str, Any] = {
        "kind": "request",
        "ts": round(time.time(), 3),
        "request_id": req.request_id,
        "model": req.model,
        "reasoning_effort": req.reasoning_effort,
        "features": {k: round(v, 4) for k, v in features.items()},
        "scores": {k: round(v, 4) for k, v in scores.items()},
        "difficulty": None if decision.difficulty is None else round(decision.difficulty, 4),
        "band": decision.band,
        "tier": decision.tier,
        "policy": decision.params.name,
        "shape": decision.shape,
        "samples": report.get("samples"),
        "agreement": agreement(report),
        # The first sample's answer beside the vote's: whether more samples changed the
        # answer, the label a value-of-compute model learns from (``ttc router train``).
        "first_answer": report.get("first_answer"),
        "answer": report.get("answer"),
        "confidence": report.get("confidence"),
        "early_stopped": report.get("early_stopped"),
        "prompt_tokens": total.prompt_tokens,
        "completion_tokens": total.completion_tokens,
        "probe_tokens": probe.total_tokens,
        "latency_s": round(latency_s, 4),
    }
    if trace_id := current_trace_id():  # tracing on: the record leads to the request's trace
        record["trace_id"] = trace_id
    text = prompt_text(req)
    if config.include_ngrams:
        record["ngram_buckets"] = DEFAULT_BUCKETS
        record["ngrams"] = hashed_ngrams(text, DEFAULT_BUCKETS)
    if config.include_prompt:
        record["prompt"] = text
    return record
