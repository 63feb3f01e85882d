"""Pieces the benchmark scripts share (standard library only: the parents import no numpy/torch).

- :func:`machine_info`: CPU model and count, memory, platform, Python, transparent huge pages,
  whether a GPU driver is present - recorded beside every figure;
- :func:`child_main`: a child process's side of a stage (timed imports, optional cProfile,
  the JSON result);
- :func:`children_map`, :func:`process_tree`, :func:`cpu_ticks`: the process tree under a pid
  and the CPU time it used, read from ``/proc`` (contention checks and load sampling).
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path


def machine_info() -> dict:
    info = {"cpus": os.cpu_count(), "platform": platform.platform(), "python": sys.version.split()[0]}
    try:
        mem = Path("/proc/meminfo").read_text().split("\n")[0].split()
        info["memory_gib"] = round(int(mem[1]) * 1024 / 2**30, 1)
        models = [ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                  if ln.startswith("model name")]  # fmt: skip
        info["cpu"] = models[0] if models else platform.processor()
    except OSError:
        pass
    try:  # the mode in brackets; tripletlit advises its tables for huge pages (tripletlit/memory.py)
        thp = Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text()
        info["transparent_hugepages"] = thp.split("[", 1)[1].split("]", 1)[0]
    except (OSError, IndexError):
        info["transparent_hugepages"] = "unavailable"
    info["gpu"] = "nvidia-smi present" if shutil.which("nvidia-smi") else "none"
    return info


def child_main(children: dict[str, Callable[[dict], dict]], stage: str, spec: dict, result: Path,
               profile: Path | None, imports: Callable[[], None]) -> None:  # fmt: skip
    """Run ``children[stage](spec)`` in this child process and write its dict to ``result`` as
    JSON, with ``imports_s`` (the time of ``imports()``, run first); under cProfile, dumped to
    ``profile``, when one is given."""
    t0 = time.perf_counter()
    imports()
    imports_s = time.perf_counter() - t0
    if profile is not None:
        import cProfile

        profiler = cProfile.Profile()
        out = profiler.runcall(children[stage], spec)
        profiler.dump_stats(profile)
    else:
        out = children[stage](spec)
    out["imports_s"] = imports_s
    result.write_text(json.dumps(out, default=float))


def parent_map() -> dict[int, int]:
    """pid -> parent pid of every process."""
    out = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
                out[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                pass
    return out


def children_map() -> dict[int, list[int]]:
    """pid -> its child pids."""
    children: dict[int, list[int]] = {}
    for pid, ppid in parent_map().items():
        children.setdefault(ppid, []).append(pid)
    return children


def process_tree(pid: int, children: dict[int, list[int]]) -> set[int]:
    """``pid`` and all its descendants."""
    out, stack = set(), [pid]
    while stack:
        p = stack.pop()
        out.add(p)
        stack.extend(children.get(p, []))
    return out


def cpu_ticks(pids: set[int]) -> int:
    """utime + stime (clock ticks) of the processes ``pids`` (gone ones count 0)."""
    total = 0
    for p in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, ValueError, IndexError):
            pass
    return total
