"""API keys are kept only as hashes, resolve to their tiers and quotas, and survive outages."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from state.config import ApiKeyConfig, AuthConfig, LimitsConfig, RedisConfig
from state.keys import KeyStore, KeysUnavailable, hash_key, key_record
from state.redis import SharedRedis, StateUnavailable

SECRET = "sk-test-alice-0123456789"


def test_hash_is_sha256_hex_of_the_key() -> None:
    assert hash_key("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_hash_with_pepper_is_hmac_sha256() -> None:
    # RFC 4231-style public vector: HMAC-SHA256(key="key", "The quick brown fox ...").
    digest = hash_key("The quick brown fox jumps over the lazy dog", b"key")
    assert digest == "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
    assert digest != hash_key("The quick brown fox jumps over the lazy dog")


def local_redis() -> SharedRedis:
    return SharedRedis(RedisConfig())


def store(*keys: ApiKeyConfig, limits: LimitsConfig | None = None, **env: str) -> KeyStore:
    auth = AuthConfig(enabled=True, keys=keys)
    return KeyStore(auth, limits or LimitsConfig(), local_redis(), env=env)


async def test_configured_hash_accepts_the_key_and_refuses_others() -> None:
    keys = store(ApiKeyConfig(name="alice", key_hash=hash_key(SECRET), tiers=("small",), rpm=5))
    found = await keys.lookup(SECRET)
    assert found is not None and found.name == "alice"
    assert found.may_use("small") and not found.may_use("large")
    assert found.quota.rpm == 5
    assert await keys.lookup(SECRET + "x") is None
    assert await keys.lookup("") is None


async def test_key_from_environment_is_hashed_and_never_kept_in_clear() -> None:
    keys = store(ApiKeyConfig(name="bob", key_env="BOB_KEY"), BOB_KEY=SECRET)
    found = await keys.lookup(SECRET)
    assert found is not None and found.name == "bob"
    assert found.key_id == hash_key(SECRET)[:16]
    assert SECRET not in repr(found) and SECRET not in repr(vars(keys))


def test_missing_environment_variable_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="BOB_KEY"):
        store(ApiKeyConfig(name="bob", key_env="BOB_KEY"))


async def test_pepper_changes_what_the_config_hash_must_be() -> None:
    entry = ApiKeyConfig(name="carol", key_hash=hash_key(SECRET, b"pepper"))
    auth = AuthConfig(enabled=True, keys=(entry,), pepper_env="PEPPER")
    keys = KeyStore(auth, LimitsConfig(), local_redis(), env={"PEPPER": "pepper"})
    assert await keys.lookup(SECRET) is not None
    unpeppered = store(entry)
    assert await unpeppered.lookup(SECRET) is None


async def test_limits_section_fills_what_a_key_leaves_unset() -> None:
    limits = LimitsConfig(rpm=60, tpm=1000, tokens_per_day=50_000)
    keys = store(ApiKeyConfig(name="dave", key_hash=hash_key(SECRET), tpm=99), limits=limits)
    found = await keys.lookup(SECRET)
    assert found is not None
    assert (found.quota.rpm, found.quota.tpm, found.quota.tokens_per_day) == (60, 99, 50_000)
    assert found.tiers is None and found.may_use("anything")


def test_config_refuses_a_malformed_hash_and_two_sources() -> None:
    with pytest.raises(ValueError, match="64 hex"):
        ApiKeyConfig(name="x", key_hash="abc")
    with pytest.raises(ValueError, match="exactly one"):
        ApiKeyConfig(name="x", key_hash=hash_key("a"), key_env="A")


class FakeRedis(SharedRedis):
    """Answers ``hgetall`` from a dict, or fails like an unavailable Redis when ``down``."""

    def __init__(self, records: dict[str, dict[str, str]]) -> None:
        super().__init__(RedisConfig(url="redis://127.0.0.1:1/0"))  # never connected
        self.records = records
        self.down = False
        self.fetches = 0

    async def run(self, op: str, fn: Any) -> Any:
        if self.down:
            raise StateUnavailable(op)
        self.fetches += 1
        return await fn(self)

    async def hgetall(self, key: str) -> dict[bytes, bytes]:
        record = self.records.get(key, {})
        return {k.encode(): v.encode() for k, v in record.items()}


async def test_redis_record_is_found_cached_and_used_stale_during_an_outage() -> None:
    now = [0.0]
    redis = FakeRedis({})
    redis.records[redis.key("key", hash_key(SECRET))] = key_record(
        "erin", tiers=("small", "large"), rpm=7
    )
    auth = AuthConfig(enabled=True)
    keys = KeyStore(auth, LimitsConfig(tpm=500), redis, env={}, clock=lambda: now[0])
    found = await keys.lookup(SECRET)
    assert found is not None and found.name == "erin"
    assert found.tiers == frozenset({"small", "large"})
    assert (found.quota.rpm, found.quota.tpm) == (7, 500)
    await keys.lookup(SECRET)
    assert redis.fetches == 1  # fresh enough: no second round trip
    now[0] = 3600.0
    redis.down = True
    stale = await keys.lookup(SECRET)
    assert stale is not None and stale.name == "erin"
    with pytest.raises(KeysUnavailable):
        await keys.lookup("sk-never-seen")


async def test_unknown_key_without_redis_is_simply_unknown() -> None:
    keys = store()
    assert await keys.lookup(SECRET) is None
    assert hashlib.sha256(SECRET.encode()).hexdigest() == hash_key(SECRET)
