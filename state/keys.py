"""API keys, kept only as hashes: what a key may use and how much.

A key's secret is never stored, logged or compared in the clear: config gives its hex SHA-256
(``key_hash``) or names an environment variable that holds it (``key_env``, hashed at start),
and Redis holds records under ``<prefix>key:<hash>``. With a pepper (``auth.pepper_env``) the
hash is HMAC-SHA256 keyed by the pepper, so a leaked hash table cannot be brute-forced offline
without the pepper too.

A Redis record is a hash with fields ``name``, ``tiers`` (comma-separated; empty or missing:
all), ``rpm``, ``tpm``, ``tokens_per_day`` (missing: the ``limits:`` default); ``key_record``
builds one. Lookups are cached locally for ``_FRESH_S``; while Redis is unavailable a cached
record is used however old it is, and an unknown key raises ``KeysUnavailable``.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from state.config import ApiKeyConfig, AuthConfig, ContractTerms, LimitsConfig
from state.redis import SharedRedis, StateUnavailable

# 30 s: a revoked or changed key takes effect within half a minute on every replica.
_FRESH_S = 30.0
# 4096 keys of ~200 bytes each: under 1 MiB whatever clients send.
_MAX_CACHED = 4096
KEY_ID_CHARS = 16  # 64 bits of the hash: unique enough to name a key in Redis and logs


class KeysUnavailable(Exception):
    """The key is not in config and Redis, which may know it, cannot be asked."""


@dataclass(frozen=True)
class Quota:
    rpm: int | None = None
    tpm: int | None = None
    tokens_per_day: int | None = None
    contract: ContractTerms = field(default_factory=ContractTerms)  # limits.contract, or the key's

    @property
    def limited(self) -> bool:
        return any(v is not None for v in (self.rpm, self.tpm, self.tokens_per_day))


@dataclass(frozen=True)
class ApiKey:
    """A known key: ``key_id`` (a prefix of its hash) identifies it in limits and logs."""

    name: str
    key_id: str
    tiers: frozenset[str] | None
    quota: Quota

    def may_use(self, tier: str) -> bool:
        return self.tiers is None or tier in self.tiers


def hash_key(secret: str, pepper: bytes | None = None) -> str:
    """Hex SHA-256 of ``secret``, or HMAC-SHA256 keyed by ``pepper`` when one is given."""
    data = secret.encode()
    if pepper:
        return hmac.new(pepper, data, hashlib.sha256).hexdigest()
    return hashlib.sha256(data).hexdigest()


def key_record(
    name: str,
    tiers: tuple[str, ...] | None = None,
    rpm: int | None = None,
    tpm: int | None = None,
    tokens_per_day: int | None = None,
) -> dict[str, str]:
    """The Redis hash fields of a key (store under ``<prefix>key:<hash>``)."""
    record = {"name": name, "tiers": ",".join(tiers or ())}
    limits = {"rpm": rpm, "tpm": tpm, "tokens_per_day": tokens_per_day}
    record.update({k: str(v) for k, v in limits.items() if v is not None})
    return record


def _opt_int(value: str | None) -> int | None:
    return int(value) if value else None


def _parse_record(digest: str, fields: Mapping[str, str], default: Quota) -> ApiKey:
    tiers = [t for t in fields.get("tiers", "").split(",") if t]
    quota = Quota(
        rpm=_opt_int(fields.get("rpm")) or default.rpm,
        tpm=_opt_int(fields.get("tpm")) or default.tpm,
        tokens_per_day=_opt_int(fields.get("tokens_per_day")) or default.tokens_per_day,
        contract=default.contract,
    )
    name = fields.get("name") or digest[:KEY_ID_CHARS]
    return ApiKey(name, digest[:KEY_ID_CHARS], frozenset(tiers) if tiers else None, quota)


class KeyStore:
    """Resolves a presented secret to an ``ApiKey`` (config first, then Redis)."""

    def __init__(
        self,
        auth: AuthConfig,
        limits: LimitsConfig,
        redis: SharedRedis,
        env: Mapping[str, str] = os.environ,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        pepper = env.get(auth.pepper_env) if auth.pepper_env else None
        if auth.pepper_env and not pepper:
            raise ValueError(f"auth.pepper_env: ${auth.pepper_env} is not set")
        self._pepper = pepper.encode() if pepper else None
        self._default = Quota(limits.rpm, limits.tpm, limits.tokens_per_day, limits.contract)
        self._redis = redis if auth.redis_keys and redis.configured else None
        self._clock = clock
        self._static = {
            digest: self._from_config(digest, entry)
            for entry in auth.keys
            if (digest := self._digest_of(entry, env)) is not None
        }
        self._cache: OrderedDict[str, tuple[float, ApiKey | None]] = OrderedDict()

    def _digest_of(self, entry: ApiKeyConfig, env: Mapping[str, str]) -> str | None:
        if entry.key_hash is not None:
            return entry.key_hash
        secret = env.get(entry.key_env or "")
        if not secret:
            raise ValueError(f"auth.keys[{entry.name}]: ${entry.key_env} is not set")
        return hash_key(secret, self._pepper)

    def _from_config(self, digest: str, entry: ApiKeyConfig) -> ApiKey:
        d = self._default
        quota = Quota(
            entry.rpm or d.rpm,
            entry.tpm or d.tpm,
            entry.tokens_per_day or d.tokens_per_day,
            entry.contract or d.contract,
        )
        tiers = frozenset(entry.tiers) if entry.tiers is not None else None
        return ApiKey(entry.name, digest[:KEY_ID_CHARS], tiers, quota)

    @property
    def size(self) -> int:
        return len(self._static)

    async def lookup(self, secret: str) -> ApiKey | None:
        """The key, or None if unknown; ``KeysUnavailable`` if only Redis could tell."""
        digest = hash_key(secret, self._pepper)
        known = self._static.get(digest)
        if known is not None or self._redis is None:
            return known
        cached = self._cache.get(digest)
        if cached is not None and self._clock() - cached[0] < _FRESH_S:
            return cached[1]
        try:
            fields = await self._fetch(digest)
        except StateUnavailable as exc:
            if cached is not None:
                return cached[1]  # stale beats refusing a paying client during an outage
            raise KeysUnavailable("cannot verify the API key right now") from exc
        found = _parse_record(digest, fields, self._default) if fields else None
        self._remember(digest, found)
        return found

    async def _fetch(self, digest: str) -> dict[str, str]:
        assert self._redis is not None
        raw = await self._redis.run("key_lookup", lambda c: c.hgetall(self._redis_key(digest)))
        return {_text(k): _text(v) for k, v in raw.items()}

    def _redis_key(self, digest: str) -> str:
        assert self._redis is not None
        return self._redis.key("key", digest)

    def _remember(self, digest: str, found: ApiKey | None) -> None:
        self._cache[digest] = (self._clock(), found)
        self._cache.move_to_end(digest)
        while len(self._cache) > _MAX_CACHED:
            self._cache.popitem(last=False)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
