"""Unit tests for the mixed-traffic set: its loader, the shipped prompts and their selection."""

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from bench.mixed import SHAPES, Prompt, load_mixed, load_prompts, select
from bench.scoring import is_correct

DATA = Path(__file__).resolve().parents[2] / "bench" / "data"

CHAT_LINE: dict[str, Any] = {
    "id": "p1",
    "endpoint": "chat",
    "shape": "open",
    "kind": "poem",
    "messages": [{"role": "user", "content": "Write a haiku."}],
    "max_tokens": 48,
    "split": "tune",
}
TEXT_LINE: dict[str, Any] = {
    "id": "p2",
    "endpoint": "completions",
    "shape": "closed",
    "kind": "qa",
    "prompt": "Q: 2+2?\nA:",
    "max_tokens": 8,
    "stop": ["\n"],
    "answer": "4",
    "aliases": ["four"],
    "split": "heldout",
}


def write_jsonl(path: Path, *rows: dict[str, Any]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


@pytest.fixture(scope="module")
def shipped() -> list[Prompt]:
    return load_mixed(DATA / "mixed.json")


def test_shipped_set_has_the_promised_prompts(shipped: list[Prompt]) -> None:
    mine = [p for p in shipped if p.source == "prompts"]
    shapes = Counter(p.shape for p in mine)
    assert shapes["open"] >= 60
    assert shapes["many_valid"] >= 10
    kinds = {p.kind for p in mine if p.shape == "open"}
    assert {"poem", "email", "recipe", "explanation", "code", "pros_cons", "summary"} <= kinds
    assert {"translation", "advice", "list", "continuation"} <= kinds
    endpoints = Counter((p.shape, p.endpoint) for p in mine)
    assert endpoints[("open", "completions")] >= 4
    assert {p.source for p in shipped} == {"prompts", "facts-dev", "facts-test", "hard-dev"}


def test_every_shipped_prompt_is_sendable(shipped: list[Prompt]) -> None:
    assert len({p.id for p in shipped}) == len(shipped)
    for prompt in shipped:
        assert 1 <= prompt.max_tokens <= 160, prompt.id  # the slow CPU worker: bounded lengths
        assert prompt.split in ("tune", "heldout")
        if prompt.endpoint == "chat":
            assert prompt.messages[-1][0] == "user" and not prompt.text
        else:
            assert prompt.text and not prompt.messages


def test_closed_prompts_score_their_answers_and_open_ones_have_none(
    shipped: list[Prompt],
) -> None:
    for prompt in shipped:
        question = prompt.question()
        if prompt.shape == "closed":
            assert is_correct(prompt.answer, question), prompt.id
            assert all(is_correct(alias, question) for alias in prompt.aliases), prompt.id
        else:
            assert (prompt.answer, prompt.aliases) == ("", ())
            assert not is_correct(question.question, question)


def test_question_is_the_last_user_turn_or_the_raw_prompt(tmp_path: Path) -> None:
    turns = {
        **CHAT_LINE,
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello!"},
            {"role": "user", "content": "Write a haiku."},
        ],
    }
    chat, text = load_prompts(write_jsonl(tmp_path / "p.jsonl", turns, TEXT_LINE))
    assert chat.messages[0] == ("system", "Be brief.")
    assert chat.question().question == "Write a haiku."
    assert (text.question().question, text.stop, text.answer) == ("Q: 2+2?\nA:", ("\n",), "4")
    assert text.question().aliases == ("four",)


@pytest.mark.parametrize(
    "change",
    [
        {"messages": None},  # chat without messages
        {"prompt": "text"},  # chat with a raw prompt too
        {"messages": [{"role": "assistant", "content": "hi"}]},  # not ending with the user
        {"shape": "closed"},  # closed without an answer
        {"answer": "x"},  # open with an answer
        {"shape": "sort_of_open"},
        {"endpoint": "responses"},
        {"split": "test"},
        {"max_tokens": 0},
        {"colour": "blue"},  # a misspelt key is refused, not ignored
    ],
)
def test_loader_refuses_inconsistent_lines(tmp_path: Path, change: dict[str, Any]) -> None:
    line = {k: v for k, v in {**CHAT_LINE, **change}.items() if v is not None}
    path = write_jsonl(tmp_path / "bad.jsonl", TEXT_LINE, line)
    with pytest.raises(ValueError, match="bad.jsonl:2"):
        load_prompts(path)


def test_manifest_refuses_duplicate_ids_and_unsplit_question_sets(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "a.jsonl", CHAT_LINE)
    write_jsonl(tmp_path / "b.jsonl", CHAT_LINE)
    manifest = tmp_path / "set.json"
    manifest.write_text(json.dumps({"prompts": ["a.jsonl", "b.jsonl"]}))
    with pytest.raises(ValueError, match="duplicate id 'p1'"):
        load_mixed(manifest)
    write_jsonl(tmp_path / "q.jsonl", {"id": "q1", "question": "?", "answer": "a"})
    manifest.write_text(json.dumps({"question_sets": [{"file": "q.jsonl", "max_tokens": 8}]}))
    with pytest.raises(ValueError, match="q.jsonl:1: split"):
        load_mixed(manifest)
    manifest.write_text(json.dumps({"prompt": ["a.jsonl"]}))
    with pytest.raises(ValueError, match="not a mixed-set manifest"):
        load_mixed(manifest)


def test_question_sets_become_closed_chat_prompts(tmp_path: Path) -> None:
    row = {"id": "q1", "question": "Capital?", "answer": "Paris", "category": "capital"}
    write_jsonl(tmp_path / "q.jsonl", {**row, "split": "heldout"})
    manifest = tmp_path / "set.json"
    manifest.write_text(json.dumps({"question_sets": [{"file": "q.jsonl", "max_tokens": 48}]}))
    (prompt,) = load_mixed(manifest)
    assert (prompt.shape, prompt.endpoint, prompt.kind, prompt.split) == (
        "closed",
        "chat",
        "capital",
        "heldout",
    )
    assert (prompt.messages, prompt.max_tokens, prompt.source) == ((("user", "Capital?"),), 48, "q")


def test_select_filters_split_and_shapes_and_limits_each_shape(shipped: list[Prompt]) -> None:
    heldout = select(shipped, split="heldout")
    assert heldout and all(p.split == "heldout" for p in heldout)
    tune = select(shipped, split="tune")
    assert {p.id for p in heldout}.isdisjoint(p.id for p in tune)
    assert len(heldout) + len(tune) == len(select(shipped)) == len(shipped)
    limited = select(shipped, split="heldout", limit=3)
    assert Counter(p.shape for p in limited) == dict.fromkeys(SHAPES, 3)
    opened = select(shipped, shapes=["open"], limit=5)
    assert {p.kind for p in opened} != {"poem"}  # evenly spaced, not the first five
    for bad in ({"split": "test"}, {"shapes": ["closed", "wide"]}):
        with pytest.raises(ValueError):
            select(shipped, **bad)
