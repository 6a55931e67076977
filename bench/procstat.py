"""What the OS says a process used: CPU seconds (user + system, all threads) and memory."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Usage:
    cpu_seconds: float
    rss_bytes: int
    peak_rss_bytes: int


def usage(pid: int) -> Usage:
    """CPU time of every thread of `pid` so far, its resident set size now and at its peak."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    # The command name (field 2) may hold spaces; fields after the closing parenthesis are fixed.
    fields = stat[stat.rindex(")") + 2 :].split()
    utime, stime = int(fields[11]), int(fields[12])
    rss = peak = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) * 1024
        elif line.startswith("VmHWM:"):
            peak = int(line.split()[1]) * 1024
    return Usage((utime + stime) / _TICKS, rss, peak)


def children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            found += [int(child) for child in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def load_average() -> tuple[float, float, float]:
    one, five, fifteen = Path("/proc/loadavg").read_text().split()[:3]
    return float(one), float(five), float(fifteen)


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


@dataclass(frozen=True)
class LoadMark:
    """The machine's CPU ticks (all CPUs, from /proc/stat) and the CPU seconds the run itself had used."""

    total_ticks: int
    idle_ticks: int
    own_seconds: float


@dataclass(frozen=True)
class Load:
    """Between two marks: the fraction of all CPUs that were busy, and of those, busy outside the run."""

    busy: float
    outside: float


def cpu_ticks() -> tuple[int, int]:
    """Clock ticks of all CPUs since boot (/proc/stat): in all, and idle (idle + iowait)."""
    values = [int(value) for value in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return sum(values[:8]), values[3] + values[4]


def own_cpu_seconds(live: Iterable[int] = ()) -> float:
    """CPU seconds of this process, of its children it has waited for (and theirs), and of `live` pids.

    `live`: descendants still running (the run's Redis and collector); every other process the run
    starts has been waited for by the time a repetition ends, so `os.times()` counts it.
    """
    times = os.times()
    seconds = times.user + times.system + times.children_user + times.children_system
    for pid in live:
        try:
            seconds += usage(pid).cpu_seconds
        except OSError:  # gone: once waited for, it is in the children's times
            continue
    return seconds


def load_since(previous: LoadMark | None, live: Iterable[int] = ()) -> tuple[Load | None, LoadMark]:
    """The load since `previous` (None on the first call); returns it and the new mark.

    What the run did not use of the busy time is other work on the machine: it competes with the
    benchmark for the same cores and caches and can move CPU per message, so a report says how much
    there was (a run with none still spreads by up to 0.35 x bare between runs: docs/benchmarks.md).
    """
    total, idle = cpu_ticks()
    mark = LoadMark(total_ticks=total, idle_ticks=idle, own_seconds=own_cpu_seconds(live))
    return (None if previous is None else load_between(previous, mark)), mark


def load_between(previous: LoadMark, mark: LoadMark) -> Load | None:
    """The load from `previous` to `mark`; None when no tick passed."""
    elapsed_ticks = mark.total_ticks - previous.total_ticks
    if elapsed_ticks <= 0:
        return None
    busy_ticks = elapsed_ticks - (mark.idle_ticks - previous.idle_ticks)
    own_ticks = (mark.own_seconds - previous.own_seconds) * _TICKS
    busy = busy_ticks / elapsed_ticks
    # Clamped: tick counts and process times are sampled a moment apart.
    return Load(busy=busy, outside=min(max((busy_ticks - own_ticks) / elapsed_ticks, 0.0), busy))
