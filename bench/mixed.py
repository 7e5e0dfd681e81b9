"""The mixed-traffic set: everyday prompts labelled by answer shape, plus the closed sets.

A mixed set is a manifest (JSON) naming JSONL files of two kinds:

- ``prompts``: lines of ``PromptLine``: an id, the ``endpoint`` (``chat`` with ``messages`` or
  ``completions`` with a ``prompt``), the ``shape`` (``open``: prose, code, lists, creative
  text, continuations; ``many_valid``: a short answer with many right ones, "Name a color.";
  ``closed``: one short answer, given with its ``aliases`` for ``bench.scoring``), a ``kind``
  (poem, email, code, ...), the ``max_tokens`` a client would plausibly send, optional ``stop``
  sequences and the committed ``split``.
- ``question_sets``: the closed question sets (``bench.scoring``'s format), each with the
  ``max_tokens`` its questions are asked with; every line carries its ``split``.

Inside, every item is a ``Prompt``; ``Prompt.question()`` is what ``bench.eval`` asks and
scores (an open prompt's has no answer: the eval reports no accuracy for it).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from bench.eval import spread
from bench.scoring import Question, load_questions
from bench.split import SPLITS

SHAPES = ("closed", "open", "many_valid")
Shape = Literal["closed", "open", "many_valid"]
Split = Literal["tune", "heldout"]


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Literal["system", "user", "assistant"]
    content: str = Field(min_length=1)


class PromptLine(BaseModel):
    """One line of a prompts file, as committed."""

    model_config = ConfigDict(extra="forbid")
    id: str = Field(min_length=1)
    endpoint: Literal["chat", "completions"]
    shape: Shape
    kind: str = Field(min_length=1)
    messages: list[Message] | None = None
    prompt: str | None = Field(None, min_length=1)
    max_tokens: int = Field(ge=1)
    stop: list[str] | None = Field(None, min_length=1, max_length=4)
    answer: str | None = Field(None, min_length=1)
    aliases: list[str] = []
    split: Split

    @model_validator(mode="after")
    def _consistent(self) -> PromptLine:
        chat = self.endpoint == "chat"
        if chat != (self.messages is not None) or chat == (self.prompt is not None):
            raise ValueError("chat prompts carry messages, completions prompts a prompt")
        if self.messages is not None and (not self.messages or self.messages[-1].role != "user"):
            raise ValueError("messages end with the user's turn")
        if (self.shape == "closed") != (self.answer is not None):
            raise ValueError("closed prompts, and only they, carry an answer")
        return self


class QuestionSet(BaseModel):
    model_config = ConfigDict(extra="forbid")
    file: str
    max_tokens: int = Field(ge=1)


class Manifest(BaseModel):
    """The mixed set's manifest; file names are relative to the manifest's folder."""

    model_config = ConfigDict(extra="forbid")
    prompts: list[str] = []
    question_sets: list[QuestionSet] = []


@dataclass(frozen=True)
class Prompt:
    """One request of the mixed set. ``messages`` are ``(role, content)`` pairs (chat);
    ``text`` is the raw prompt (completions); ``source`` names the file it came from."""

    id: str
    shape: str
    kind: str
    split: str
    max_tokens: int
    endpoint: str = "chat"
    messages: tuple[tuple[str, str], ...] = ()
    text: str = ""
    stop: tuple[str, ...] = ()
    answer: str = ""
    aliases: tuple[str, ...] = ()
    source: str = ""

    def question(self) -> Question:
        """The eval's unit of work: the id, the last user turn (or the raw prompt) and, for a
        closed prompt, the answer and aliases the scorer accepts."""
        text = self.messages[-1][1] if self.messages else self.text
        return Question(self.id, text, self.answer, self.aliases, self.kind)


def load_prompts(path: Path) -> list[Prompt]:
    """Every line of a prompts file; a bad line raises ``ValueError`` naming it."""
    prompts = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            raw = PromptLine.model_validate_json(line)
        except ValidationError as exc:
            raise ValueError(f"{path}:{number}: not a prompt record ({exc})") from exc
        prompts.append(
            Prompt(
                id=raw.id,
                shape=raw.shape,
                kind=raw.kind,
                split=raw.split,
                max_tokens=raw.max_tokens,
                endpoint=raw.endpoint,
                messages=tuple((m.role, m.content) for m in raw.messages or ()),
                text=raw.prompt or "",
                stop=tuple(raw.stop or ()),
                answer=raw.answer or "",
                aliases=tuple(raw.aliases),
                source=path.stem,
            )
        )
    return prompts


def closed_prompts(path: Path, max_tokens: int) -> list[Prompt]:
    """A question set as closed chat prompts; every line must carry its ``split``."""
    splits = _splits_of(path)
    return [
        Prompt(
            id=q.id,
            shape="closed",
            kind=q.category,
            split=splits[q.id],
            max_tokens=max_tokens,
            messages=(("user", q.question),),
            answer=q.answer,
            aliases=q.aliases,
            source=path.stem,
        )
        for q in load_questions(path)
    ]


def _splits_of(path: Path) -> dict[str, str]:
    splits: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if line.strip():
            raw = json.loads(line)
            if raw.get("split") not in SPLITS:
                raise ValueError(f"{path}:{number}: split must be one of {', '.join(SPLITS)}")
            splits[str(raw["id"])] = raw["split"]
    return splits


def load_mixed(path: Path) -> list[Prompt]:
    """Every prompt a manifest names, prompts files first; ids unique across all of them."""
    try:
        manifest = Manifest.model_validate_json(path.read_text())
    except ValidationError as exc:
        raise ValueError(f"{path}: not a mixed-set manifest ({exc})") from exc
    folder = path.parent
    prompts = [p for name in manifest.prompts for p in load_prompts(folder / name)]
    for entry in manifest.question_sets:
        prompts.extend(closed_prompts(folder / entry.file, entry.max_tokens))
    seen: set[str] = set()
    for prompt in prompts:
        if prompt.id in seen:
            raise ValueError(f"{path}: duplicate id {prompt.id!r}")
        seen.add(prompt.id)
    return prompts


def select(
    prompts: Sequence[Prompt],
    *,
    split: str = "all",
    shapes: Sequence[str] = SHAPES,
    limit: int | None = None,
) -> list[Prompt]:
    """The prompts of ``split`` (``all``, ``tune`` or ``heldout``) and ``shapes``, at most
    ``limit`` per shape, evenly spaced through each shape's prompts (``bench.eval.spread``: the
    files are ordered by kind, so a prefix would be all poems)."""
    if split != "all" and split not in SPLITS:
        raise ValueError(f"split must be all, {' or '.join(SPLITS)}; got {split!r}")
    unknown = sorted(set(shapes) - set(SHAPES))
    if unknown:
        raise ValueError(f"unknown shape {', '.join(unknown)}; expected {', '.join(SHAPES)}")
    chosen: list[Prompt] = []
    for shape in SHAPES:
        if shape in shapes:
            of_shape = [p for p in prompts if p.shape == shape and split in ("all", p.split)]
            chosen.extend(spread(of_shape, limit))
    return chosen
