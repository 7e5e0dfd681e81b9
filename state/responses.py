"""Stored responses of the Responses API: ``put``, ``get``, ``delete`` by id, per owner.

A stored response is a JSON record: the owner (the API key's identity), the response object
as the client saw it, its turn (the chat messages its input added, its answer included) and
the id of the response it continued, so ``previous_response_id`` can rebuild the context
link by link without the client resending it (``server.api.responses.endpoint``). Redis holds it
under ``<prefix>resp:<id>`` with a TTL; while Redis is not configured or unavailable, a
bounded in-process LRU holds it (visible to this replica only). A response belongs to the
key that made it: for any other key it does not exist.
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

from state.config import ResponsesConfig
from state.redis import SharedRedis, StateUnavailable


class ResponseStore:
    def __init__(
        self,
        config: ResponsesConfig,
        redis: SharedRedis,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self._redis = redis
        self._clock = clock
        self._local: OrderedDict[str, tuple[float, bytes]] = OrderedDict()

    async def put(self, response_id: str, owner: str, record: Mapping[str, Any]) -> bool:
        """Store ``record``; False when it is larger than ``max_bytes`` (not stored)."""
        raw = json.dumps({"owner": owner, **record}, separators=(",", ":")).encode()
        if len(raw) > self.config.max_bytes:
            return False
        key = self._redis.key("resp", response_id)
        try:
            await self._redis.run("resp_put", lambda c: c.set(key, raw, ex=self.config.ttl_s))
        except StateUnavailable:
            self._local_put(response_id, raw)
        return True

    async def get(self, response_id: str, owner: str) -> dict[str, Any] | None:
        raw: bytes | str | None = self._local_get(response_id)
        if raw is None:
            key = self._redis.key("resp", response_id)
            try:
                raw = await self._redis.run("resp_get", lambda c: c.get(key))
            except StateUnavailable:
                raw = None
        if raw is None:
            return None
        record: dict[str, Any] = json.loads(raw)
        return record if record.get("owner") == owner else None

    async def delete(self, response_id: str, owner: str) -> bool:
        """True when the owner's response existed and is gone."""
        if await self.get(response_id, owner) is None:
            return False
        self._local.pop(response_id, None)
        key = self._redis.key("resp", response_id)
        try:
            await self._redis.run("resp_delete", lambda c: c.delete(key))
        except StateUnavailable:
            pass
        return True

    def _local_get(self, response_id: str) -> bytes | None:
        entry = self._local.get(response_id)
        if entry is None:
            return None
        expires, raw = entry
        if expires < self._clock():
            del self._local[response_id]
            return None
        return raw

    def _local_put(self, response_id: str, raw: bytes) -> None:
        if self.config.local_entries <= 0:
            return
        self._local[response_id] = (self._clock() + self.config.ttl_s, raw)
        self._local.move_to_end(response_id)
        while len(self._local) > self.config.local_entries:
            self._local.popitem(last=False)
