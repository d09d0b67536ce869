"""CPU time of processes from /proc (Linux), to tell where the wall time of a phase went:
the registry server's Python, PostgreSQL's backends, or the benchmark client."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _stat_cpu_seconds(stat_path: Path) -> float | None:
    """User + system CPU seconds from a /proc stat file (a process's or a thread's)."""
    try:
        stat = stat_path.read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of one process (all its threads); 0 if unknown."""
    return _stat_cpu_seconds(Path(f"/proc/{pid}/stat")) or 0.0


def thread_cpu_seconds(pid: int) -> dict[int, float]:
    """CPU seconds of each live thread of a process, by thread id: the scheduler's own count
    in nanoseconds (schedstat), else the clock-tick counts (10 ms steps)."""
    found: dict[int, float] = {}
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return found
    for task in tasks:
        try:
            found[int(task.name)] = int((task / "schedstat").read_text().split()[0]) / 1e9
            continue
        except (OSError, ValueError, IndexError):
            pass
        seconds = _stat_cpu_seconds(task / "stat")
        if seconds is not None:
            found[int(task.name)] = seconds
    return found


def postgres_cpu_seconds() -> float:
    """CPU seconds of every process named postgres (server and backends) on this machine."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().strip() != "postgres":
                continue
        except OSError:
            continue
        total += process_cpu_seconds(int(entry.name))
    return total


@dataclass(frozen=True)
class CpuSample:
    server: float
    postgres: float
    client: float

    @classmethod
    def take(cls, server_pids: Sequence[int]) -> CpuSample:
        """`server_pids`: every registry server process (replicas are summed)."""
        times = os.times()
        return cls(
            server=sum(process_cpu_seconds(pid) for pid in server_pids),
            postgres=postgres_cpu_seconds(),
            client=times.user + times.system,
        )

    def __sub__(self, other: CpuSample) -> CpuSample:
        return CpuSample(self.server - other.server, self.postgres - other.postgres,
                         self.client - other.client)
