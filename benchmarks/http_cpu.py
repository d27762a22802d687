"""Where the CPU goes during a load: the server's, the load generator's, everyone else's.

The machine may be shared (2 cores, other work running): these read /proc so that a noisy
neighbour shows in the figures rather than hides in them, and `settle` waits (bounded) for
other work to stop before each load.
"""

from __future__ import annotations

import os
import resource
import time
from pathlib import Path

from rich.console import Console


def machine_cpu_seconds() -> float:
    """CPU seconds the whole machine has spent busy (not idle) since boot, from /proc/stat."""
    with open("/proc/stat", encoding="ascii") as stat:
        fields = [int(x) for x in stat.readline().split()[1:8]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    """CPU seconds of this process and its finished children (the load generator)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def busy_cpus(seconds: float = 1.0) -> float:
    """How many CPUs were busy over `seconds`."""
    before = machine_cpu_seconds()
    time.sleep(seconds)
    return (machine_cpu_seconds() - before) / seconds


def settle(limit_s: float, console: Console) -> float:
    """Wait (at most `limit_s`) until other work uses under 0.25 CPU; return what it used."""
    deadline = time.monotonic() + limit_s
    busy = busy_cpus()
    warned = False
    while busy >= 0.25 and time.monotonic() < deadline:
        if not warned:
            console.print(f"[yellow]  {busy:.2f} CPU busy with other work: waiting …[/yellow]")
            warned = True
        busy = busy_cpus(2.0)
    if busy >= 0.25:
        console.print(f"[yellow]  measuring anyway with {busy:.2f} CPU busy elsewhere[/yellow]")
    return busy


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and its descendants (Linux /proc)."""
    ticks = os.sysconf("SC_CLK_TCK")
    stats: dict[int, tuple[int, float]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
        except OSError:
            continue
        fields = text.rpartition(")")[2].split()
        stats[int(entry.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / ticks)
    total, frontier = 0.0, [pid]
    seen: set[int] = set()
    while frontier:
        current = frontier.pop()
        if current in seen or current not in stats:
            continue
        seen.add(current)
        total += stats[current][1]
        frontier.extend(child for child, (parent, _) in stats.items() if parent == current)
    return total
