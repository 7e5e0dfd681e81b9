"""Balancing: load scores, power of two choices, rendezvous affinity and its overload escape."""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter

import pytest

from workers.balance import Load, choose, p2c, prefix_key, rendezvous_order, scores
from workers.signals import WorkerLoad

URLS = [f"http://10.0.0.{i}:8000" for i in range(1, 5)]


def signal(running: float = 0, waiting: float = 0, kv: float | None = 0.0) -> WorkerLoad:
    return WorkerLoad(running, waiting, kv, at=0.0)


def pick(load_scores: list[float], key: str | None, seed: int = 0) -> int:
    urls = URLS[: len(load_scores)]
    return choose(urls, load_scores, key, factor=2.0, slack=2.0, rng=random.Random(seed))


def key_ranked_first(index: int, urls: list[str]) -> str:
    """A key whose rendezvous order starts with ``urls[index]``."""
    return next(k for k in map(str, range(1000)) if rendezvous_order(k, urls)[0] == index)


# scores ---------------------------------------------------------------------------------
def test_stale_signal_is_unknown_not_idle() -> None:
    fresh_busy, stale = scores([Load(0, signal(running=1)), Load(0, None)])
    assert stale > fresh_busy  # assumed as busy as the busiest fresh peer, plus a penalty


def test_all_unknown_falls_back_to_gateway_in_flight() -> None:
    a, b = scores([Load(3, None), Load(1, None)])
    assert b < a


def test_waiting_and_kv_pressure_weigh_more_than_running() -> None:
    running, waiting = scores([Load(0, signal(running=2)), Load(0, signal(running=1, waiting=1))])
    assert waiting > running
    cool, full = scores([Load(0, signal(running=1, kv=0.1)), Load(0, signal(running=1, kv=0.95))])
    assert full > cool


def test_in_flight_counts_when_the_scrape_lags() -> None:
    """The scrape says idle, but this gateway just sent 5 calls there."""
    lagging, idle = scores([Load(5, signal(running=0)), Load(0, signal(running=0))])
    assert lagging > idle


# power of two choices ------------------------------------------------------------------
def test_p2c_never_picks_the_most_loaded_and_favours_the_least() -> None:
    rng = random.Random(7)
    counts = Counter(p2c([5.0, 1.0, 3.0], rng) for _ in range(3000))
    assert counts[0] == 0
    assert counts[1] > 1800  # the least loaded wins both pairs it is in: 2/3 of draws


def test_p2c_with_one_candidate() -> None:
    assert p2c([9.0], random.Random(0)) == 0


def test_no_key_is_p2c() -> None:
    assert pick([4.0, 0.0], key=None) == 1


# rendezvous affinity -------------------------------------------------------------------
def test_same_key_same_worker_and_keys_spread() -> None:
    chosen = [pick([0.0] * 4, key=f"prompt-{i}") for i in range(400)]
    assert all(pick([0.0] * 4, key=f"prompt-{i}") == c for i, c in enumerate(chosen))
    assert min(Counter(chosen).values()) > 60  # about 100 each


def test_removing_another_worker_keeps_the_key_where_it_was() -> None:
    key = key_ranked_first(2, URLS)
    survivors = [u for u in URLS if u != URLS[0]]
    assert survivors[rendezvous_order(key, survivors)[0]] == URLS[2]


def test_affinity_holds_while_its_worker_is_only_somewhat_busier() -> None:
    key = key_ranked_first(0, URLS)
    assert pick([5.0, 3.0, 3.0, 3.0], key) == 0  # 5 <= 2 * 3 + 2


def test_much_busier_worker_spills_to_the_next_ranked_every_time() -> None:
    key = key_ranked_first(0, URLS)
    second = rendezvous_order(key, URLS)[1]
    for seed in range(20):
        assert pick([9.0, 0.0, 0.0, 0.0], key, seed) == second  # 9 > 2 * 0 + 2


def test_spill_skips_every_ranked_worker_that_is_also_much_busier() -> None:
    key = key_ranked_first(0, URLS)
    order = rendezvous_order(key, URLS)
    load_scores = [9.0] * 4
    load_scores[order[3]] = 0.0
    assert pick(load_scores, key) == order[3]


# prefix key ----------------------------------------------------------------------------
SYSTEM = {"role": "system", "content": "You are a careful assistant. " * 100}


def test_probe_and_step_continuations_share_the_request_key() -> None:
    question = [SYSTEM, {"role": "user", "content": "What is 7 + 5?"}]
    probe = [*question, {"role": "assistant", "content": "7 + 5 is"}]
    assert prefix_key({"messages": probe}, 2048) == prefix_key({"messages": question}, 2048)


def test_requests_sharing_a_long_system_prompt_share_a_key() -> None:
    a = {"messages": [SYSTEM, {"role": "user", "content": "a"}]}
    b = {"messages": [SYSTEM, {"role": "user", "content": "b"}], "temperature": 0.3}
    assert prefix_key(a, 2048) == prefix_key(b, 2048)


def test_different_short_prompts_differ() -> None:
    a = {"messages": [{"role": "user", "content": "capital of France?"}]}
    b = {"messages": [{"role": "user", "content": "capital of Peru?"}]}
    assert prefix_key(a, 2048) != prefix_key(b, 2048)


def test_no_messages_no_key() -> None:
    assert prefix_key({"prompt": "x"}, 2048) is None
    assert prefix_key({"messages": [{"role": "assistant", "content": "x"}]}, 2048) is None


def _full_key(messages: list[dict[str, object]], chars: int) -> str:
    """The key as defined: a hash of the first ``chars`` characters of all the messages."""
    text = json.dumps(messages, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.blake2b(text[:chars].encode(), digest_size=16).hexdigest()


@pytest.mark.parametrize(
    "messages",
    [
        [{"role": "user", "content": "x" * 100_000}],
        [{"role": "user", "content": '"\\\n\t' * 30_000}],  # escapes lengthen the text
        [{"role": "user", "content": [{"type": "text", "text": "ü€" * 5_000}] * 3}],
        [{"role": "user", "content": "ok"}] * 5_000,
        [{"role": "system", "content": "s" * 60}, {"role": "user", "content": "q" * 3_000}],
    ],
)
def test_a_big_prompt_hashes_as_its_first_characters_do(messages: list[dict[str, object]]) -> None:
    """The key reads only what it hashes, and is the same key as hashing the whole text."""
    for chars in (64, 2048):
        assert prefix_key({"messages": messages}, chars) == _full_key(messages, chars)
