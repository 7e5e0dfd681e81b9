"""``ttc eval``: run a question set through a running gateway, once per policy setting.

A *setting* is a named way of asking: ``single``, ``bonN`` (fixed best-of-N majority),
``adaptive`` / ``adaptiveXX`` (adaptive best-of-N at confidence 0.XX), ``convergence`` and
``auto`` (the router decides), each with optional ``:key=value`` overrides of its ``ttc``
controls (``adaptive:max_samples=16``). Every (setting, question) pair is one chat request; its
outcome is one ``Record``, appended to a ``.partial.jsonl`` file as soon as it is known, so an
interrupted run resumes where it stopped: pairs already answered are skipped, failed ones are
asked again. ``bench.report`` turns the records into the results file, table and plot.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

from bench.scoring import Question, is_correct

# 240 characters: an error message long enough to diagnose, short enough to keep records tidy.
ERROR_CHARS = 240


@dataclass(frozen=True)
class Setting:
    """A named request shape: the ``model`` to ask, the ``ttc`` controls (None: none) and a
    ``temperature`` that overrides the run's (None: keep the run's)."""

    name: str
    model: str
    ttc: Mapping[str, Any] | None
    temperature: float | None = None


_BON = re.compile(r"^bon(\d+)$")
_ADAPTIVE = re.compile(r"^adaptive(\d{2})?$")


def parse_setting(name: str, *, tier: str, auto_model: str = "auto") -> Setting:
    """The setting called ``name``: a base setting, then optional ``:key=value`` overrides of
    its ``ttc`` controls, e.g. ``adaptive:max_samples=16:confidence=0.95``. Values are JSON
    scalars (``null``, ``true``, numbers) or else strings. The whole name labels the results.
    """
    base, *overrides = name.split(":")
    setting = _base_setting(base, tier=tier, auto_model=auto_model)
    if not overrides:
        return setting
    if setting.ttc is None:
        raise ValueError(f"setting {name!r}: {base!r} takes no ttc overrides")
    ttc = dict(setting.ttc)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ValueError(f"setting {name!r}: expected key=value, got {item!r}")
        ttc[key] = _scalar(raw)
    return replace(setting, name=name, ttc=ttc)


def _scalar(raw: str) -> Any:
    try:
        value = json.loads(raw)
    except ValueError:
        return raw
    return value if value is None or isinstance(value, (bool, int, float, str)) else raw


def _base_setting(name: str, *, tier: str, auto_model: str) -> Setting:
    """The base setting called ``name``; fixed policies pin ``tier``, ``auto`` asks
    ``auto_model``.

    ``greedy`` is ``single`` at temperature 0, the deterministic one-sample baseline.

    ``bonN`` is adaptive_bon with ``min_samples = max_samples = N`` and the one-sample gate off:
    one round of N samples and a plurality vote, the fixed best-of-N baseline.
    """
    if name == "single":
        return Setting(name, tier, {"policy": "single"})
    if name == "greedy":
        return Setting(name, tier, {"policy": "single"}, temperature=0.0)
    if name == "convergence":
        return Setting(name, tier, {"policy": "convergence"})
    if name == "auto":
        return Setting(name, auto_model, None)
    if match := _BON.match(name):
        n = int(match.group(1))
        if n < 1:
            raise ValueError(f"setting {name!r}: N must be at least 1")
        ttc = {
            "policy": "adaptive_bon",
            "min_samples": n,
            "max_samples": n,
            "single_sample_confidence": None,
        }
        return Setting(name, tier, ttc)
    if match := _ADAPTIVE.match(name):
        adaptive: dict[str, Any] = {"policy": "adaptive_bon"}
        if match.group(1):
            adaptive["confidence"] = int(match.group(1)) / 100
        return Setting(name, tier, adaptive)
    raise ValueError(
        f"unknown setting {name!r}; expected single, greedy, bonN, adaptive, adaptiveXX,"
        " convergence or auto, each optionally followed by :key=value overrides"
    )


@dataclass(frozen=True)
class Outcome:
    """What the gateway said for one request."""

    reply: str
    completion_tokens: int
    prompt_tokens: int
    samples: int
    ttc: Mapping[str, Any] = field(default_factory=dict)
    reasoning_tokens: int = 0  # the part of completion_tokens spent thinking


@dataclass(frozen=True)
class Record:
    """One (setting, question) result; ``error`` set means the request failed."""

    setting: str
    id: str
    correct: bool = False
    reply: str = ""
    completion_tokens: int = 0
    reasoning_tokens: int = 0
    prompt_tokens: int = 0
    samples: int = 0
    latency_s: float = 0.0
    early_stopped: bool | None = None
    stop_reason: str | None = None
    error: str | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.setting, self.id)


Ask = Callable[[Setting, Question], Awaitable[Outcome]]


class PartialStore:
    """Append-only JSONL of records, headed by the run's parameters.

    The first line is ``{"meta": {...}}``; resuming with different parameters (another data file,
    ``max_tokens``, tier, ...) is refused, because mixing the two runs' records would be
    meaningless. A torn last line (the process died mid-write) is ignored.
    """

    def __init__(self, path: Path, meta: Mapping[str, Any]) -> None:
        self.path = path
        self.meta = dict(meta)

    def load(self) -> dict[tuple[str, str], Record]:
        """The latest record of each key, after checking the stored parameters match."""
        if not self.path.exists():
            return {}
        records: dict[tuple[str, str], Record] = {}
        for line in self.path.read_text().splitlines():
            try:
                raw = json.loads(line)
            except json.JSONDecodeError:
                continue
            if "meta" in raw:
                self._check_meta(raw["meta"])
                continue
            record = Record(**raw)
            records[record.key] = record
        return records

    def _check_meta(self, stored: Mapping[str, Any]) -> None:
        if dict(stored) != self.meta:
            changed = sorted(k for k in {*stored, *self.meta} if stored.get(k) != self.meta.get(k))
            raise ValueError(
                f"{self.path} holds records of a run with other parameters ({', '.join(changed)});"
                " pass --fresh to discard them"
            )

    def append(self, record: Record) -> None:
        """Add one record: the header first in a new file; a fresh line after a torn one."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a+b") as handle:
            size = handle.seek(0, 2)
            lines = [] if size else [json.dumps({"meta": self.meta})]
            if size:
                handle.seek(size - 1)
                if handle.read(1) != b"\n":
                    handle.write(b"\n")
            lines.append(json.dumps(asdict(record)))
            handle.write(("\n".join(lines) + "\n").encode())


def rescore(
    records: Mapping[tuple[str, str], Record], questions: Sequence[Question]
) -> dict[tuple[str, str], Record]:
    """``records`` judged again by the current scorer, from their stored replies.

    A resumed run may hold records scored by an older ``bench.scoring``; the results must not
    mix two scorers.
    """
    by_id = {q.id: q for q in questions}
    return {
        key: replace(r, correct=is_correct(r.reply, by_id[r.id]))
        if r.error is None and r.id in by_id
        else r
        for key, r in records.items()
    }


T = TypeVar("T")


def spread(questions: Sequence[T], limit: int | None) -> list[T]:
    """``limit`` questions evenly spaced through the set (all of them when ``limit`` is None).

    Evenly spaced rather than the first ``limit``: the sets are ordered by category, so a prefix
    would be all capitals.
    """
    if limit is None or limit >= len(questions):
        return list(questions)
    if limit < 1:
        raise ValueError("limit must be at least 1")
    return [questions[i * len(questions) // limit] for i in range(limit)]


def pending(
    settings: Sequence[Setting],
    questions: Sequence[Question],
    done: Mapping[tuple[str, str], Record],
) -> list[tuple[Setting, Question]]:
    """The pairs still to ask, setting by setting: never answered, or last answered by an error."""
    return [
        (s, q)
        for s in settings
        for q in questions
        if (s.name, q.id) not in done or done[(s.name, q.id)].error is not None
    ]


async def ask_one(ask: Ask, setting: Setting, question: Question) -> Record:
    """Ask once and score the reply; any failure becomes a record with ``error`` set."""
    started = time.perf_counter()
    try:
        outcome = await ask(setting, question)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # a failed request is a result to report, not a crash
        return Record(setting.name, question.id, error=f"{type(exc).__name__}: {exc}"[:ERROR_CHARS])
    latency = time.perf_counter() - started
    return Record(
        setting=setting.name,
        id=question.id,
        correct=is_correct(outcome.reply, question),
        reply=outcome.reply,
        completion_tokens=outcome.completion_tokens,
        reasoning_tokens=outcome.reasoning_tokens,
        prompt_tokens=outcome.prompt_tokens,
        samples=outcome.samples,
        latency_s=round(latency, 4),
        early_stopped=_optional_bool(outcome.ttc.get("early_stopped")),
        stop_reason=_optional_str(outcome.ttc.get("stop_reason")),
    )


async def run_pairs(
    ask: Ask,
    pairs: Sequence[tuple[Setting, Question]],
    store: PartialStore,
    concurrency: int,
    on_record: Callable[[Record], None] = lambda _: None,
) -> list[Record]:
    """Ask every pair, at most ``concurrency`` at a time, storing each record as it arrives."""
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    gate = asyncio.Semaphore(concurrency)
    records: list[Record] = []

    async def one(setting: Setting, question: Question) -> None:
        async with gate:
            record = await ask_one(ask, setting, question)
        store.append(record)
        records.append(record)
        on_record(record)

    async with asyncio.TaskGroup() as group:
        for setting, question in pairs:
            group.create_task(one(setting, question))
    return records


async def evaluate(
    ask: Ask,
    settings: Sequence[Setting],
    questions: Sequence[Question],
    store: PartialStore,
    concurrency: int,
    on_record: Callable[[Record], None] = lambda _: None,
    on_resume: Callable[[int], None] = lambda _: None,
) -> dict[tuple[str, str], Record]:
    """Every stored record, after asking the pairs ``store`` does not hold an answer for.

    ``on_resume`` learns how many of the requested pairs were already answered.
    """
    done = store.load()
    todo = pending(settings, questions, done)
    on_resume(len(settings) * len(questions) - len(todo))
    for record in await run_pairs(ask, todo, store, concurrency, on_record):
        done[record.key] = record
    return done


def _optional_bool(value: Any) -> bool | None:
    return bool(value) if value is not None else None


def _optional_str(value: Any) -> str | None:
    return str(value) if value is not None else None
