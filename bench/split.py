"""The tuning / held-out split of an eval set: deterministic, stratified, about half and half.

Rule: items are grouped into strata (``stratum_of``: shape, endpoint and kind or category).
Within a stratum they are ordered by the SHA-256 of their id; the strata are taken in sorted
order and concatenated; walking that sequence, items alternate ``tune``, ``heldout``, ``tune``,
... So each stratum splits within one item of half and half, the whole set within one item,
and the split depends on the ids and strata alone: not on file order, not on a random seed.

The split is committed as each line's ``split`` field (``python -m bench.split FILE ...``
writes it). Adding items to a stratum can move others across the line, so a unit test checks
that the committed fields still follow this rule: a change that would move a held-out item is
seen in review, never applied silently. Held-out items are for final figures only, never for
tuning thresholds, prompts, budgets or routing.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

TUNE = "tune"
HELDOUT = "heldout"
SPLITS = (TUNE, HELDOUT)


def id_hash(item_id: str) -> str:
    """The SHA-256 hex digest of an id: an order no one chose."""
    return hashlib.sha256(item_id.encode()).hexdigest()


def assign_splits(items: Iterable[tuple[str, str]]) -> dict[str, str]:
    """``{id: "tune" | "heldout"}`` for ``(id, stratum)`` pairs, by the module's rule."""
    ordered = sorted(items, key=lambda item: (item[1], id_hash(item[0])))
    ids = [item_id for item_id, _ in ordered]
    if len(ids) != len(set(ids)):
        raise ValueError("ids must be unique to be split")
    return {item_id: SPLITS[i % 2] for i, item_id in enumerate(ids)}


def stratum_of(raw: Mapping[str, Any]) -> str:
    """The stratum of one JSONL record: ``shape/endpoint/kind`` (a question set's lines, which
    carry neither shape nor endpoint, are closed chat prompts stratified by category)."""
    shape = raw.get("shape", "closed")
    endpoint = raw.get("endpoint", "chat")
    kind = raw.get("kind") or raw.get("category", "")
    return f"{shape}/{endpoint}/{kind}"


def split_lines(lines: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The records with their ``split`` field set by the rule (other keys kept, in order)."""
    splits = assign_splits((str(raw["id"]), stratum_of(raw)) for raw in lines)
    return [{**raw, "split": splits[str(raw["id"])]} for raw in lines]


def write_splits(path: Path) -> None:
    """Set the ``split`` field of every line of a JSONL file, in place."""
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    text = "".join(json.dumps(raw, ensure_ascii=False) + "\n" for raw in split_lines(lines))
    path.write_text(text)


def main(argv: Sequence[str]) -> int:
    """``python -m bench.split FILE ...``: write each file's split (each file on its own)."""
    if not argv:
        sys.stderr.write("usage: python -m bench.split FILE.jsonl ...\n")
        return 2
    for name in argv:
        write_splits(Path(name))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
