"""What machine and libraries a result came from (recorded in every report and benchmark header), and how busy
the machine was while a benchmark timed something."""

from __future__ import annotations

import math
import os
import platform
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

LIBRARIES = ("torch", "ray", "optuna", "calflops", "pandas", "pyarrow")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def usable_cpus() -> int:
    """The cores this process may run on (a container's or taskset's share), not the host's count."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def library_versions(names: tuple[str, ...] = LIBRARIES) -> dict[str, str]:
    out = {}
    for name in names:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "missing"
    return out


def hardware() -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["gpu_count"] = torch.cuda.device_count()
    return info


def _process_ticks(pid: int | str) -> int:
    """CPU ticks (user + system, all threads) a process has used; 0 when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime, stime (proc(5); the fields after the command's ")")
    except (OSError, ValueError, IndexError):
        return 0


def _cpu_ticks(ours: Sequence[int]) -> tuple[int, int, int] | None:
    """(busy ticks of all CPUs, all ticks of all CPUs, ticks of this process and ``ours``), or None off Linux."""
    try:
        values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    except (OSError, ValueError, IndexError):
        return None
    total = sum(values)  # user nice system idle iowait irq softirq steal
    own = _process_ticks("self") + sum(_process_ticks(pid) for pid in set(ours) - {os.getpid()})
    return total - values[3] - values[4], total, own


class OthersCpu:
    """The share of the machine's CPU time that other processes (or the hypervisor's steal) took in a window.

    ``ours``: further process ids whose time is not "others'" (the other trials of a packed measurement).
    """

    def __init__(self, ours: Sequence[int] = ()) -> None:
        self.ours = tuple(ours)
        self.start = _cpu_ticks(self.ours)

    def share(self) -> float:
        end = _cpu_ticks(self.ours)
        if self.start is None or end is None or end[1] <= self.start[1]:
            return math.nan
        busy, total, own = (e - s for e, s in zip(end, self.start, strict=True))
        return min(1.0, max(0.0, (busy - own) / total))
