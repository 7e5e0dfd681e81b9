"""Router statistics: windowed counters and sums, shared by every replica through Redis.

``record`` is synchronous and cheap (no I/O): it adds one finished request to an in-memory
aggregate keyed by (window, tier, policy, band, difficulty decile). A background task flushes
the aggregate to Redis every ``flush_s`` (hash ``<prefix>stats:<window index>``, one field per
group and measure, expiring after ``retention`` windows). While Redis is unavailable the
aggregate keeps growing up to ``max_pending`` groups, then new groups are dropped and counted
in ``dropped``; a failed flush is retried (at least once: a flush that timed out after Redis
applied it counts twice). ``snapshot`` merges the last windows from Redis, or this replica's
own history when Redis cannot be read.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any

from redis.asyncio.client import Redis

from core.request import Decision
from core.result import PolicyResult
from state.redis import SharedRedis, StateUnavailable

Group = tuple[str, str, str, str]  # tier, policy, band, difficulty decile ("-" when unknown)


@dataclass(frozen=True)
class Observation:
    tier: str
    policy: str
    band: str | None
    difficulty: float | None
    samples: int
    tokens: int
    agreement: float | None  # share of the votes the chosen answer got
    early_stopped: bool = False

    @property
    def group(self) -> Group:
        decile = "-" if self.difficulty is None else str(min(int(self.difficulty * 10), 9))
        return (self.tier, self.policy, self.band or "-", decile)


def observation(decision: Decision, result: PolicyResult) -> Observation:
    report = result.report
    votes = report.get("votes")
    agreement = None
    if isinstance(votes, Mapping) and votes:
        counts = [float(v) for v in votes.values()]
        agreement = max(counts) / max(sum(counts), 1e-9)
    return Observation(
        tier=decision.tier,
        policy=decision.params.name,
        band=decision.band,
        difficulty=decision.difficulty,
        samples=int(report.get("samples", len(result.choices))),
        tokens=result.usage.total.total_tokens,
        agreement=agreement,
        early_stopped=bool(report.get("early_stopped")),
    )


@dataclass
class Sums:
    requests: float = 0
    samples: float = 0
    tokens: float = 0
    early_stops: float = 0
    agreement_sum: float = 0
    agreement_n: float = 0

    def add(self, obs: Observation) -> None:
        self.requests += 1
        self.samples += obs.samples
        self.tokens += obs.tokens
        self.early_stops += int(obs.early_stopped)
        if obs.agreement is not None:
            self.agreement_sum += obs.agreement
            self.agreement_n += 1

    def merge(self, other: Sums) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def items(self) -> Iterable[tuple[str, float]]:
        return ((f.name, getattr(self, f.name)) for f in fields(self))

    @property
    def mean_agreement(self) -> float | None:
        return self.agreement_sum / self.agreement_n if self.agreement_n else None


Table = dict[Group, Sums]
_MEASURES = frozenset(f.name for f in fields(Sums))


class RouterStats:
    def __init__(
        self,
        redis: SharedRedis,
        *,
        window_s: int = 60,  # one minute: fine enough for a budget controller's feedback
        retention: int = 60,  # windows kept: the last hour
        max_pending: int = 1024,  # groups awaiting a flush: bounds memory while Redis is down
        flush_s: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._redis = redis
        self.window_s = window_s
        self.retention = retention
        self.max_pending = max_pending
        self._flush_s = flush_s
        self._clock = clock
        self._pending: dict[int, Table] = {}
        self._history: dict[int, Table] = {}
        self.dropped = 0
        self._task: asyncio.Task[None] | None = None

    def _window(self) -> int:
        return int(self._clock() // self.window_s)

    @property
    def pending_groups(self) -> int:
        return sum(len(t) for t in self._pending.values())

    def record(self, obs: Observation) -> None:
        """Count one finished request (no I/O)."""
        window = self._window()
        table = self._pending.setdefault(window, {})
        if obs.group not in table and self.pending_groups >= self.max_pending:
            self.dropped += 1
        else:
            table.setdefault(obs.group, Sums()).add(obs)
        self._history.setdefault(window, {}).setdefault(obs.group, Sums()).add(obs)
        self._trim(self._history)

    def _trim(self, tables: dict[int, Table]) -> None:
        oldest = self._window() - self.retention
        for window in [w for w in tables if w <= oldest]:
            del tables[window]

    async def flush(self) -> bool:
        """Push pending sums to Redis; True when nothing is left pending."""
        if not self._pending or not self._redis.configured:
            self._pending.clear()  # local-only: history already holds them
            return True
        batch, self._pending = self._pending, {}
        try:
            await self._redis.run("stats_flush", lambda c: self._write(c, batch))
        except StateUnavailable:
            self._requeue(batch)
            self._trim(self._pending)
            return False
        return True

    async def _write(self, client: Redis, batch: dict[int, Table]) -> None:
        pipe = client.pipeline(transaction=False)
        for window, table in batch.items():
            key = self._redis.key("stats", str(window))
            for group, sums in table.items():
                for name, value in sums.items():
                    if value:
                        pipe.hincrbyfloat(key, "|".join((*group, name)), value)
            pipe.expire(key, self.window_s * (self.retention + 1))
        await pipe.execute()

    def _requeue(self, batch: dict[int, Table]) -> None:
        for window, table in batch.items():
            into = self._pending.setdefault(window, {})
            for group, sums in table.items():
                into.setdefault(group, Sums()).merge(sums)

    async def snapshot(self, windows: int) -> Table:
        """Sums over the last ``windows`` windows (the current one included), all replicas."""
        current = self._window()
        wanted = range(current - windows + 1, current + 1)
        try:
            raw = await self._redis.run("stats_read", lambda c: _read(c, self._redis, wanted))
        except StateUnavailable:
            return _merged(self._history.get(w, {}) for w in wanted)
        tables = [_parse(h) for h in raw]
        tables += [self._pending.get(w, {}) for w in wanted]  # not flushed yet
        return _merged(tables)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._flush_loop())

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(self._flush_s)
            await self.flush()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.flush()


async def _read(client: Redis, redis: SharedRedis, windows: range) -> list[Any]:
    pipe = client.pipeline(transaction=False)
    for window in windows:
        pipe.hgetall(redis.key("stats", str(window)))
    result: list[Any] = await pipe.execute()
    return result


def _parse(raw: Mapping[Any, Any]) -> Table:
    table: Table = {}
    for field, value in raw.items():
        text = field.decode() if isinstance(field, bytes) else str(field)
        *group, name = text.split("|")
        if len(group) != 4 or name not in _MEASURES:
            continue
        sums = table.setdefault((group[0], group[1], group[2], group[3]), Sums())
        setattr(sums, name, getattr(sums, name) + float(value))
    return table


def _merged(tables: Iterable[Table]) -> Table:
    out: Table = {}
    for table in tables:
        for group, sums in table.items():
            out.setdefault(group, Sums()).merge(sums)
    return out
