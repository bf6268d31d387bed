"""A CPU quota for one benchmark process: a cgroup of its own, limited to a share of one core.

Why: on a 2-core machine the load generator needs more CPU than the relay it loads, so "one media node per core"
leaves the nodes never the limit. Giving each node the same small quota makes the nodes the bottleneck while the
load generator keeps the rest of the machine: then the capacity of one node and of two can be compared.
Uses the cgroup v2 ``cpu.max`` file when the unified hierarchy has the cpu controller, else cgroup v1's
``cpu.cfs_quota_us``. Needs root (the benchmark machine's CI user is).
"""

from __future__ import annotations

import uuid
from pathlib import Path

PERIOD_US = 10_000  # short: a throttled node stalls at most 10 ms minus its share, not 100
_V2 = Path("/sys/fs/cgroup")
_V1 = Path("/sys/fs/cgroup/cpu")


class CpuQuota:
    """A cgroup limited to ``percent`` of one core; ``wrap`` makes a command start inside it."""

    def __init__(self, percent: float) -> None:
        quota = int(PERIOD_US * percent / 100)
        name = f"hoichan-bench-{uuid.uuid4().hex[:8]}"
        controllers = _V2 / "cgroup.controllers"
        if controllers.exists() and "cpu" in controllers.read_text().split():
            self.path = _V2 / name
            self.path.mkdir()
            (self.path / "cpu.max").write_text(f"{quota} {PERIOD_US}")
        elif (_V1 / "cpu.cfs_quota_us").exists():
            self.path = _V1 / name
            self.path.mkdir()
            (self.path / "cpu.cfs_period_us").write_text(str(PERIOD_US))
            (self.path / "cpu.cfs_quota_us").write_text(str(quota))
        else:
            raise RuntimeError("no cgroup cpu controller to set a quota with")

    def wrap(self, command: list[str]) -> list[str]:
        """The command, entering the cgroup first (so its threads and children are all inside it)."""
        return ["sh", "-c", f'echo $$ > {self.path}/cgroup.procs && exec "$@"', "sh", *command]

    def remove(self) -> None:
        """Remove the cgroup once its processes are gone (the kernel refuses while any remain)."""
        try:
            self.path.rmdir()
        except OSError:
            pass
