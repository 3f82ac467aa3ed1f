"""CPU accounting for the processes under test, read from ``/proc`` (Linux).

A *group* (the gateway, the simulator, the load generator) is a set of root PIDs plus,
optionally, all their descendants (uvicorn's worker processes). For each process we read
``utime + stime`` (its own CPU) plus ``cutime + cstime`` (CPU of children it has reaped),
keyed by ``(pid, starttime)`` so a recycled PID is never mistaken for the old process.

The CPU a group used over a window is ``Σ end − Σ start`` over every process seen at
either sample (a process missing at one end counts 0 there). That is exact for processes
alive throughout, for processes started inside the window, and for children that exited
and were reaped by a tracked parent (their CPU moves into the parent's ``cutime``).
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CLOCK_TICKS", "CpuGroup", "CpuSample", "ProcStat", "cpu_seconds_between", "cpu_split_between",
           "descendants", "load_average", "parse_stat", "pids_listening_on"]

CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
PROC = Path("/proc")


@dataclass(frozen=True, slots=True)
class ProcStat:
    pid: int
    ppid: int
    utime: int  # clock ticks
    stime: int
    cutime: int
    cstime: int
    starttime: int

    @property
    def user_sys(self) -> tuple[int, int]:
        return self.utime + self.cutime, self.stime + self.cstime


def parse_stat(text: str) -> ProcStat:
    """Parse one ``/proc/<pid>/stat`` line. The command name is in parentheses and may
    itself contain spaces and parentheses, so fields are counted from the *last* ``)``."""
    pid = int(text[: text.index(" ")])
    rest = text[text.rindex(")") + 2:].split()
    # rest[0] is field 3 (state); field n is rest[n - 3].
    return ProcStat(pid=pid, ppid=int(rest[1]), utime=int(rest[11]), stime=int(rest[12]),
                    cutime=int(rest[13]), cstime=int(rest[14]), starttime=int(rest[19]))


def read_stat(pid: int) -> ProcStat | None:
    try:
        return parse_stat((PROC / str(pid) / "stat").read_text())
    except (FileNotFoundError, ProcessLookupError, ValueError, IndexError):
        return None


def _all_stats() -> list[ProcStat]:
    stats = (read_stat(int(entry.name)) for entry in PROC.iterdir() if entry.name.isdigit())
    return [stat for stat in stats if stat is not None]


def descendants(roots: Iterable[int], stats: Iterable[ProcStat]) -> set[int]:
    """The roots and every process below them."""
    children: dict[int, list[int]] = {}
    for s in stats:
        children.setdefault(s.ppid, []).append(s.pid)
    found: set[int] = set()
    todo = list(roots)
    while todo:
        pid = todo.pop()
        if pid in found:
            continue
        found.add(pid)
        todo.extend(children.get(pid, ()))
    return found


CpuSample = Mapping[tuple[int, int], tuple[int, int]]  # (pid, starttime) -> (user, system) ticks


def cpu_split_between(start: CpuSample, end: CpuSample) -> tuple[float, float]:
    """(user, system) CPU seconds used between two samples of one group."""
    user = sum(u for u, _ in end.values()) - sum(u for u, _ in start.values())
    system = sum(s for _, s in end.values()) - sum(s for _, s in start.values())
    return max(user, 0) / CLOCK_TICKS, max(system, 0) / CLOCK_TICKS


def cpu_seconds_between(start: CpuSample, end: CpuSample) -> float:
    """CPU seconds (user + system) used between two samples of one group (see the module
    docstring)."""
    return sum(cpu_split_between(start, end))


class CpuGroup:
    """A set of processes whose CPU is sampled together."""

    def __init__(self, roots: Iterable[int], *, include_children: bool = True) -> None:
        self.roots = list(roots)
        self.include_children = include_children
        self.pids: set[int] = set(self.roots)

    def sample(self) -> dict[tuple[int, int], tuple[int, int]]:
        if self.include_children:
            stats = _all_stats()
            self.pids = descendants(self.roots, stats)
            chosen = [s for s in stats if s.pid in self.pids]
        else:
            chosen = [s for s in (read_stat(pid) for pid in self.roots) if s is not None]
            self.pids = {s.pid for s in chosen}
        return {(s.pid, s.starttime): s.user_sys for s in chosen}


def _listening_inodes(port: int | None) -> set[str]:
    """Inodes of listening TCP sockets on ``port`` (every port when None)."""
    inodes: set[str] = set()
    for table in ("tcp", "tcp6"):
        try:
            lines = (PROC / "net" / table).read_text().splitlines()[1:]
        except FileNotFoundError:
            continue
        for line in lines:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and (port is None or int(local.rsplit(":", 1)[1], 16) == port):  # 0A = LISTEN
                inodes.add(inode)
    return inodes


def _socket_holders(inodes: set[str]) -> dict[int, set[str]]:
    """pid -> which of these socket inodes it holds open."""
    wanted = {f"socket:[{inode}]": inode for inode in inodes}
    holders: dict[int, set[str]] = {}
    if not wanted:
        return holders
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            for fd in (entry / "fd").iterdir():
                inode = wanted.get(os.readlink(fd))
                if inode is not None:
                    holders.setdefault(int(entry.name), set()).add(inode)
        except (PermissionError, FileNotFoundError, ProcessLookupError, NotADirectoryError):
            continue
    return holders


def pids_listening_on(port: int) -> list[int]:
    """The processes serving ``port``: every holder of its listening socket (a uvicorn
    supervisor and its workers all hold the inherited socket) — except a launcher that
    pre-bound it for a child and also holds other services' sockets (``paygate demo``,
    the test harness), which would otherwise pull its other children into the group.
    Needs permission to read the processes' ``fd/``."""
    mine = _listening_inodes(port)
    holders = _socket_holders(_listening_inodes(None))
    serving = {pid for pid, held in holders.items() if held & mine}
    stats = {s.pid: s for s in _all_stats()}
    launchers = set()
    for pid in serving:
        others = holders[pid] - mine
        below = descendants([pid], stats.values()) - {pid}
        if others and below & serving:
            launchers.add(pid)
    return sorted(serving - launchers)


def load_average() -> tuple[float, float, float]:
    try:
        a, b, c = (PROC / "loadavg").read_text().split()[:3]
        return float(a), float(b), float(c)
    except (FileNotFoundError, ValueError):
        return (0.0, 0.0, 0.0)
