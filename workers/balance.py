"""Which worker takes a call: least loaded (power of two choices), sticky to a prompt prefix.

Pure functions over the candidates' load scores, so the choice is testable without I/O.

- ``scores`` turns each worker's gateway in-flight count and its vLLM load signal into one
  number. A worker whose signal is stale is *unknown*: it is assumed as busy as the busiest
  fresh peer, plus a penalty, never idle.
- ``choose`` without a key is power of two choices (two random candidates, the less loaded
  wins): near-least-loaded with no herd on the one idle worker that every gateway saw at the
  last scrape. With a key it walks the candidates in rendezvous-hash order and takes the first
  that is not *much busier* than the least loaded (``score <= factor * least + slack``):
  consistent hashing with bounded load. The top-ranked worker holds the prefix in its KV cache;
  when it is overloaded the key spills to the *next* ranked worker, the same one every time,
  so the spill builds a second warm cache instead of scattering.
- ``prefix_key`` is the affinity key the pool uses by default (see ``workers.pool``).
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from workers.signals import WorkerLoad

# 4: a full KV cache costs about as much as four queued requests; new sequences preempt.
KV_WEIGHT = 4.0
# 1: an unknown load loses a tie against any known load at the same level.
UNKNOWN_PENALTY = 1.0


@dataclass(frozen=True)
class Load:
    in_flight: int  # this gateway's calls on the worker, always current
    signal: WorkerLoad | None  # vLLM's view (all gateways' calls); None when stale or missing


def _queue(signal: WorkerLoad) -> float:
    return signal.running + signal.waiting


def scores(loads: Sequence[Load]) -> list[float]:
    """One load score per worker; lower is less loaded.

    Fresh: ``max(in_flight, running + waiting) + waiting + KV_WEIGHT * kv_usage``. ``max``
    because the scrape is up to a second old while ``in_flight`` is exact but counts only this
    gateway; ``waiting`` counts twice because a waiting request means the batch is full, so a
    new one queues instead of joining it. Unknown: ``max(in_flight, busiest fresh queue) +
    UNKNOWN_PENALTY``.
    """
    busiest = max((_queue(x.signal) for x in loads if x.signal is not None), default=0.0)
    out: list[float] = []
    for load in loads:
        s = load.signal
        if s is None:
            out.append(max(float(load.in_flight), busiest) + UNKNOWN_PENALTY)
        else:
            kv = KV_WEIGHT * (s.kv_usage or 0.0)
            out.append(max(float(load.in_flight), _queue(s)) + s.waiting + kv)
    return out


def rendezvous_order(key: str, urls: Sequence[str]) -> list[int]:
    """Indices of ``urls`` by descending rendezvous weight for ``key`` (stable per key/url)."""

    def weight(i: int) -> int:
        digest = hashlib.blake2b(f"{key}\0{urls[i]}".encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big")

    return sorted(range(len(urls)), key=weight, reverse=True)


def p2c(load_scores: Sequence[float], rng: random.Random) -> int:
    """Power of two choices: the less loaded of two distinct random candidates."""
    if len(load_scores) == 1:
        return 0
    a, b = rng.sample(range(len(load_scores)), 2)
    return b if load_scores[b] < load_scores[a] else a


def choose(
    urls: Sequence[str],
    load_scores: Sequence[float],
    key: str | None,
    *,
    factor: float,
    slack: float,
    rng: random.Random,
) -> int:
    """Index of the chosen candidate (``urls`` and ``load_scores`` are parallel, non-empty)."""
    if key is None:
        return p2c(load_scores, rng)
    bound = factor * min(load_scores) + slack
    for i in rendezvous_order(key, urls):
        if load_scores[i] <= bound:
            return i
    return min(range(len(urls)), key=load_scores.__getitem__)  # unreachable with factor >= 1


def prefix_key(body: Mapping[str, Any], chars: int) -> str | None:
    """A hash of the first ``chars`` characters of the prompt, without a trailing assistant turn.

    The trailing assistant message is the partial answer a probe or a speculative step asks
    vLLM to continue; without it, every sample, probe and step of one request hashes alike,
    and so do requests that share a system prompt or a conversation's earlier turns.
    """
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return None
    last = messages[-1]
    if isinstance(last, Mapping) and last.get("role") == "assistant":
        messages = messages[:-1]
    if not messages:
        return None
    # Only the first ``chars`` characters count: serializing what lies past them would cost a
    # MiB prompt milliseconds on the event loop for every sample, for the same key.
    text = json.dumps(
        _cut(messages, chars), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    return hashlib.blake2b(text[:chars].encode(), digest_size=16).hexdigest()


def _cut(value: Any, chars: int) -> Any:
    """``value`` with every string and list cut to ``chars`` items: its JSON text's first
    ``chars`` characters are those of ``value``'s (a cut string or list still spans at least
    ``chars`` characters from where it starts, and escaping only lengthens it)."""
    if isinstance(value, str):
        return value[:chars]
    if isinstance(value, list):
        return [_cut(item, chars) for item in value[:chars]]
    if isinstance(value, Mapping):
        return {key: _cut(item, chars) for key, item in value.items()}
    return value


def affinity_key(
    mode: str, body: Mapping[str, Any], caller_key: str | None, chars: int
) -> str | None:
    """The placement key under ``pool.affinity``: ``prefix`` (falling back to the caller's key
    for a body without messages), ``caller``, or ``none``."""
    if mode == "none":
        return None
    if mode == "caller":
        return caller_key
    return prefix_key(body, chars) or caller_key
