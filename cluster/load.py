"""CPU use of a process and its media workers, read from /proc: what a media node reports as its load."""

from __future__ import annotations

import os
import time
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime of these processes (all their threads); a process that is gone counts 0."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / CLK_TCK


class CpuMeter:
    """% of one core used by a set of processes since the previous reading."""

    def __init__(self) -> None:
        self._last: tuple[float, float] | None = None
        self.percent = 0.0

    def sample(self, pids: list[int]) -> float:
        now, used = time.monotonic(), cpu_seconds(pids)
        if self._last is not None and now > self._last[0]:
            self.percent = max(0.0, (used - self._last[1]) / (now - self._last[0]) * 100)
        self._last = (now, used)
        return self.percent
