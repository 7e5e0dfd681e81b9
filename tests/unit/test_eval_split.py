"""Unit tests for bench.split: the tuning / held-out split of the eval sets and its committed
fields."""

import json
import random
from collections import Counter
from pathlib import Path

import pytest

from bench.split import HELDOUT, TUNE, assign_splits, split_lines, stratum_of, write_splits

DATA = Path(__file__).resolve().parents[2] / "bench" / "data"
SPLIT_BY_RULE = [DATA / "mixed" / "prompts.jsonl", DATA / "hard-dev.jsonl"]

ITEMS = [(f"id-{i}", f"stratum-{i % 3}") for i in range(31)]


def lines_of(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_split_is_deterministic_and_ignores_order() -> None:
    shuffled = ITEMS[:]
    random.Random(7).shuffle(shuffled)
    assert assign_splits(ITEMS) == assign_splits(shuffled) == assign_splits(reversed(ITEMS))


def test_split_is_disjoint_and_covers_every_item() -> None:
    splits = assign_splits(ITEMS)
    assert set(splits) == {item_id for item_id, _ in ITEMS}
    assert set(splits.values()) == {TUNE, HELDOUT}  # each id is in exactly one of the two


def test_split_halves_every_stratum_and_the_whole() -> None:
    splits = assign_splits(ITEMS)
    strata = dict(ITEMS)
    for stratum in set(strata.values()):
        sizes = Counter(s for item_id, s in splits.items() if strata[item_id] == stratum)
        assert abs(sizes[TUNE] - sizes[HELDOUT]) <= 1, stratum
    totals = Counter(splits.values())
    assert abs(totals[TUNE] - totals[HELDOUT]) <= 1


def test_split_depends_on_the_ids_not_their_position() -> None:
    renamed = [(f"other-{item_id}", stratum) for item_id, stratum in ITEMS]
    before = assign_splits(ITEMS)
    after = assign_splits(renamed)
    assert [before[i] for i, _ in ITEMS] != [after[f"other-{i}"] for i, _ in ITEMS]


def test_split_refuses_duplicate_ids() -> None:
    with pytest.raises(ValueError, match="unique"):
        assign_splits([("a", "s"), ("a", "t")])


def test_strata_are_shape_endpoint_and_kind_or_category() -> None:
    assert stratum_of({"shape": "open", "endpoint": "chat", "kind": "poem"}) == "open/chat/poem"
    assert stratum_of({"category": "arithmetic"}) == "closed/chat/arithmetic"


@pytest.mark.parametrize("path", SPLIT_BY_RULE, ids=lambda p: p.name)
def test_committed_splits_follow_the_rule(path: Path) -> None:
    lines = lines_of(path)
    assert split_lines(lines) == lines  # a held-out item never moves silently


@pytest.mark.parametrize(("name", "split"), [("facts-dev", TUNE), ("facts-test", HELDOUT)])
def test_facts_sets_keep_their_files_split(name: str, split: str) -> None:
    assert {line["split"] for line in lines_of(DATA / f"{name}.jsonl")} == {split}


def test_write_splits_sets_the_field_and_keeps_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "set.jsonl"
    rows = [{"id": f"q{i}", "question": "é?", "answer": "a", "category": "c"} for i in range(4)]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    write_splits(path)
    written = lines_of(path)
    assert [{k: v for k, v in r.items() if k != "split"} for r in written] == rows
    assert Counter(r["split"] for r in written) == {TUNE: 2, HELDOUT: 2}
    assert "é" in path.read_text()
