"""Exact-match response cache for deterministic requests.

A request is deterministic when it sets ``temperature: 0`` or a ``seed``. Its key is the
SHA-256 of the normalised request (messages, sampling and pass-through fields as canonical
JSON, with defaults such as ``n: 1`` dropped) plus the router's decision (tier, policy
parameters, difficulty), so a different decision never reuses an answer; unless
``cache.shared_across_keys``, the caller's key id is part of it too. The cache is opt-in twice:
``cache.enabled`` in config, and ``ttc: {"cache": true}`` per request unless ``cache.opt_in``
is false.

Entries live in Redis with ``cache.ttl_s``; while Redis is unavailable the cache is skipped.
Without Redis configured, a bounded local LRU stands in. A hit returns the stored answer with
no worker call and an empty usage ledger (nothing was spent); its ``ttc`` report says
``"cache": "hit"`` and keeps the original spend under ``cached_usage``.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any, Literal

from core.errors import InvalidRequest
from core.request import Decision, GenRequest
from core.result import PolicyResult, ResultChoice
from core.usage import UsageLedger
from state.config import CacheConfig
from state.redis import SharedRedis, StateUnavailable

CacheResult = Literal["hit", "miss", "unavailable"]
_FORMAT = 1  # bump when the stored shape changes: old entries then simply miss
# Pass-through fields that never change what the model generates.
_IRRELEVANT = frozenset({"user", "metadata", "store"})


def split_cache_flag(ttc: Mapping[str, Any] | None) -> tuple[dict[str, Any], bool | None]:
    """``ttc`` without its ``cache`` field (the router knows nothing of it), and the field."""
    rest = dict(ttc or {})
    flag = rest.pop("cache", None)
    if flag is not None and not isinstance(flag, bool):
        raise InvalidRequest("ttc.cache must be true or false", param="ttc.cache")
    return rest, flag


def deterministic(req: GenRequest) -> bool:
    return req.sampling.get("temperature") == 0 or req.sampling.get("seed") is not None


def _normal_sampling(sampling: Mapping[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in sampling.items() if v is not None}
    if out.get("n") == 1:
        del out["n"]
    if out.get("logprobs") is False:
        del out["logprobs"]
    if isinstance(out.get("stop"), str):
        out["stop"] = [out["stop"]]
    return out


def cache_key(req: GenRequest, decision: Decision, scope: str) -> str:
    """Hex SHA-256 of the normalised request and the decision (and ``scope``, the key id)."""
    doc = {
        "v": _FORMAT,
        "scope": scope,
        "messages": list(req.messages),
        "sampling": _normal_sampling(req.sampling),
        "passthrough": {k: v for k, v in req.passthrough.items() if k not in _IRRELEVANT},
        "tier": decision.tier,
        "policy": decision.params.model_dump(mode="json"),
        "difficulty": decision.difficulty,
        # A reasoning tier's budget (and so reasoning_effort) changes the answer.
        "thinking": decision.thinking.report() if decision.thinking is not None else None,
    }
    canonical = json.dumps(doc, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def encode(result: PolicyResult) -> bytes:
    total = result.usage.total
    doc = {
        "choices": [
            {
                "index": c.index,
                "text": c.text,
                "finish_reason": c.finish_reason,
                "logprobs": c.logprobs,
                "tool_calls": list(c.tool_calls),
            }
            for c in result.choices
        ],
        "report": dict(result.report),
        "usage": {
            "prompt_tokens": total.prompt_tokens,
            "completion_tokens": total.completion_tokens,
        },
    }
    return json.dumps(doc, separators=(",", ":"), default=str).encode()


def decode(raw: bytes | str) -> PolicyResult:
    doc = json.loads(raw)
    choices = tuple(
        ResultChoice(
            c["index"], c["text"], c["finish_reason"], c["logprobs"], tuple(c["tool_calls"])
        )
        for c in doc["choices"]
    )
    report = {**doc["report"], "cache": "hit", "cached_usage": doc["usage"]}
    return PolicyResult(choices=choices, usage=UsageLedger(), report=report)


class ResponseCache:
    """``get``/``put`` by key; Redis when configured (skipped while down), else a local LRU."""

    def __init__(
        self, config: CacheConfig, redis: SharedRedis, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.config = config
        self._redis = redis
        self._clock = clock
        self._local: OrderedDict[str, tuple[float, bytes]] = OrderedDict()

    def wanted(self, req: GenRequest, flag: bool | None) -> bool:
        """Should this (non-stream) request use the cache?"""
        if not self.config.enabled or flag is False or not deterministic(req):
            return False
        return flag is True or not self.config.opt_in

    def key(self, req: GenRequest, decision: Decision, scope: str) -> str:
        shared = self.config.shared_across_keys
        return self._redis.key("cache", cache_key(req, decision, "*" if shared else scope))

    async def get(self, key: str) -> tuple[CacheResult, PolicyResult | None]:
        if not self._redis.configured:
            raw = self._local_get(key)
        else:
            try:
                raw = await self._redis.run("cache_get", lambda c: c.get(key))
            except StateUnavailable:
                return "unavailable", None
        if raw is None:
            return "miss", None
        return "hit", decode(raw)

    async def put(self, key: str, result: PolicyResult) -> None:
        """Store ``result`` unless it is too large; errors only skip the store."""
        raw = encode(result)
        if len(raw) > self.config.max_entry_bytes:
            return
        if not self._redis.configured:
            self._local_put(key, raw)
            return
        ttl = self.config.ttl_s
        try:
            await self._redis.run("cache_put", lambda c: c.set(key, raw, ex=ttl))
        except StateUnavailable:
            pass

    def _local_get(self, key: str) -> bytes | str | None:
        entry = self._local.get(key)
        if entry is None:
            return None
        if entry[0] <= self._clock():
            del self._local[key]
            return None
        self._local.move_to_end(key)
        return entry[1]

    def _local_put(self, key: str, raw: bytes) -> None:
        if self.config.local_entries == 0:
            return
        self._local[key] = (self._clock() + self.config.ttl_s, raw)
        self._local.move_to_end(key)
        while len(self._local) > self.config.local_entries:
            self._local.popitem(last=False)
