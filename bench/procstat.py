"""CPU time and peak memory of a process tree, read from Linux's ``/proc`` (no dependency).

A proxy may fork workers (LiteLLM runs uvicorn in a child), so everything is summed over the
tree rooted at the started process: user + system time of every live process, plus the time of
children it has already reaped (``cutime``/``cstime``), and the peak resident set (``VmHWM``)
of each process. Summing per-process peaks over-states the tree's simultaneous peak a little;
for the one-process gateway the two are the same.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

_PROC = Path("/proc")


@dataclass(frozen=True)
class TreeUsage:
    """A snapshot of one process tree: CPU seconds so far, peak RSS in bytes, process count."""

    cpu_s: float
    peak_rss_bytes: int
    processes: int


def _stat_fields(pid: int) -> list[str]:
    """``/proc/<pid>/stat`` fields after the command name (which may hold spaces)."""
    raw = (_PROC / str(pid) / "stat").read_text()
    return raw[raw.rindex(")") + 2 :].split()


def children_of(root: int) -> list[int]:
    """``root`` and every live descendant, parents before children."""
    parents: dict[int, list[int]] = {}
    for entry in _PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int(_stat_fields(int(entry.name))[1])  # field 4: ppid
        except (OSError, ValueError, IndexError):
            continue  # exited while we looked
        parents.setdefault(ppid, []).append(int(entry.name))
    tree, queue = [], [root]
    while queue:
        pid = queue.pop(0)
        tree.append(pid)
        queue.extend(sorted(parents.get(pid, [])))
    return tree


def process_cpu_s(pid: int) -> float:
    """utime + stime + cutime + cstime of one process, in seconds."""
    fields = _stat_fields(pid)
    ticks = sum(int(v) for v in fields[11:15])  # fields 14-17 of stat(5)
    return ticks / os.sysconf("SC_CLK_TCK")


def peak_rss_bytes(pid: int) -> int:
    """``VmHWM`` of one process: the most resident memory it has held since it started."""
    for line in (_PROC / str(pid) / "status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024  # reported in kB
    return 0


def tree_usage(root: int) -> TreeUsage:
    """CPU and peak RSS summed over ``root``'s live tree (processes gone meanwhile skipped)."""
    cpu, rss, count = 0.0, 0, 0
    for pid in children_of(root):
        try:
            cpu += process_cpu_s(pid)
            rss += peak_rss_bytes(pid)
            count += 1
        except (OSError, ValueError):
            continue
    return TreeUsage(cpu_s=cpu, peak_rss_bytes=rss, processes=count)
