"""Cluster benchmark: the relay load of ``relay.py`` on one media node and on two, and a room's recovery after its
media node is killed.

Usage: ``.venv/bin/python bench/cluster.py [--quick] [--redis redis://127.0.0.1:6379/0] [--node-quota PCT]``.
Prints Markdown tables.

With ``--node-quota PCT`` each node runs in a cgroup limited to PCT % of one core instead of being pinned, and N
rises until a load is not held, for one node and then two: on a 2-core machine, where the load generator needs
more CPU than the relay, this is how the nodes become the limit and the capacity of one and two can be compared.

Throughput: one signaling process and one or two media nodes (``hoichan serve --role signaling|media``, media in
the node process itself), node i pinned to core i with ``os.sched_setaffinity``; the load generators of
``relay.py`` (``loadgen.py``: publishers of a pre-encoded 640×480 VP8 clip, receive-only subscribers, 1 + 8 per
room) join through the signaling process, which places each room on the least-loaded node. A stream is held at
≥ 29 fps with 95 % of frames within 100 ms, as in ``relay.py``; CPU is read per process from /proc over the window.

Recovery: two media nodes, rooms of three participants each sending live-encoded video (aiortc's encoder answers
the relay's keyframe requests, as a browser does; the clip cannot), spread over both nodes. The node hosting rooms
is killed with SIGKILL; a room has recovered when every member decodes video from every other member again
(the ``media-failed`` → ``restart-media`` path of ``client/participant.py``). A fresh node replaces the dead one
and the round is repeated. Redis keys live under a prefix of their own, removed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import redis
from aiortc import VideoStreamTrack
from clip import ensure_clip
from cpu_quota import CpuQuota
from relay import (
    CORES,
    FANOUT,
    HELD_FPS,
    HELD_LATENCY,
    LOGS,
    ROOT,
    SERVE,
    QUIET,
    LoadGenerator,
    Processes,
    background_load,
    cpu_seconds,
    free_port,
    machine_seconds,
    percentile,
    process_tree,
    room_shape,
    wait_listening,
)

from client.participant import Participant
from media import hooks

HEARTBEAT, NODE_TIMEOUT = 0.5, 2.0  # the configuration's defaults
RECOVERY_ROOMS, RECOVERY_MEMBERS = 4, 3
QUOTA_STEP, QUOTA_MAX = 8, 96  # streams: one room of 1 + 8 more per step


@dataclass
class Throughput:
    nodes: int
    streams: int
    ready: int
    node_cpu: list[float]  # % of one core, per node
    signaling_cpu: float
    loadgen_cpu: float
    other_cpu: float
    fps: list[float]
    latencies: list[float]
    rooms_per_node: list[int]  # where the signaling process placed the rooms

    @property
    def per_stream(self) -> float:
        """Media nodes' CPU per forwarded stream, % of one core."""
        return sum(self.node_cpu) / self.streams

    @property
    def held(self) -> bool:
        on_time = not self.latencies or percentile(self.latencies, 0.95) <= HELD_LATENCY
        return self.ready == self.streams and bool(self.fps) and min(self.fps) >= HELD_FPS and on_time


class Deployment:
    """A signaling process and media nodes sharing Redis under a prefix of their own."""

    def __init__(self, tmp: Path, redis_url: str, processes: Processes, log: str) -> None:
        self.tmp = tmp
        self.redis_url = redis_url
        self.prefix = f"hoichan-bench-{uuid.uuid4().hex[:8]}:"
        self.processes = processes
        self.log = log
        accounts = tmp / "accounts.json"
        accounts.write_text("[]")
        self.env = {
            **os.environ,
            "HOICHAN_SERVER__HOST": "127.0.0.1",
            "HOICHAN_MEDIA__ICE_ADDRESSES": '["127.0.0.1"]',
            # Loopback subscribers: start their downlink estimate above the clip's 600 kbit/s, or adaptation pauses
            # that single-layer video until its first trial (1-2 s) and the start-up enters the measurement
            "HOICHAN_MEDIA__DOWNLINK_START_KBPS": "5000",
            "HOICHAN_MEDIA__ROOM_MAX_PARTICIPANTS": "32",
            "HOICHAN_MEDIA__WORKERS": "0",  # media in the node process: one pinned process per node
            "HOICHAN_STORE__PATH": str(tmp / "data"),
            "HOICHAN_RECORDING__DIRECTORY": str(tmp / "recordings"),
            "HOICHAN_RECORDING__POLICY": "never",
            "HOICHAN_AUTH__ACCOUNTS_FILE": str(accounts),
            "HOICHAN_LOGGING__LEVEL": "WARNING",
            "HOICHAN_CLUSTER__REDIS_URL": redis_url,
            "HOICHAN_CLUSTER__KEY_PREFIX": self.prefix,
            "HOICHAN_CLUSTER__HEARTBEAT_INTERVAL": str(HEARTBEAT),
            "HOICHAN_CLUSTER__NODE_TIMEOUT": str(NODE_TIMEOUT),
            "PYTHONPATH": str(ROOT),
        }
        self.url = ""
        self.signaling: subprocess.Popen[bytes] | None = None
        self.nodes: dict[str, subprocess.Popen[bytes]] = {}

    def start_signaling(self) -> None:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        env = {**self.env, "HOICHAN_SERVER__PORT": str(port), "HOICHAN_CLUSTER__ROLE": "signaling"}
        self.signaling = self.processes.spawn(SERVE, env, LOGS / f"{self.log}-signaling.log")
        wait_listening(self.url, self.signaling)

    def start_node(self, node_id: str, core: int | None, quota: CpuQuota | None = None) -> subprocess.Popen[bytes]:
        port = free_port()
        env = {**self.env, "HOICHAN_SERVER__PORT": str(port), "HOICHAN_CLUSTER__ROLE": "media",
               "HOICHAN_CLUSTER__NODE_ID": node_id}
        command = SERVE if core is None else ["taskset", "-c", str(core), *SERVE]
        if quota is not None:
            command = quota.wrap(command)
        node = self.processes.spawn(command, env, LOGS / f"{self.log}-{node_id}.log")
        self.nodes[node_id] = node
        wait_listening(f"http://127.0.0.1:{port}", node)
        client = redis.Redis.from_url(self.redis_url)
        deadline = time.monotonic() + 20
        while not client.exists(f"{self.prefix}node:{node_id}:alive"):
            if time.monotonic() > deadline:
                raise RuntimeError(f"media node {node_id} did not register")
            time.sleep(0.05)
        client.close()
        return node

    def node_of(self, room: str) -> str | None:
        client = redis.Redis.from_url(self.redis_url)
        try:
            value = client.get(f"{self.prefix}room:{room}")
            return value.decode() if value is not None else None
        finally:
            client.close()

    def clean(self) -> None:
        client = redis.Redis.from_url(self.redis_url)
        keys = list(client.scan_iter(match=self.prefix + "*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()


# -- throughput -------------------------------------------------------------------------------------------


def throughput(redis_url: str, nodes: int, streams: int, warmup: float, measure: float, pin: bool = True,
               quota_percent: float | None = None) -> Throughput:
    rooms = room_shape(streams)
    processes = Processes()
    quotas = [CpuQuota(quota_percent) for _ in range(nodes)] if quota_percent else [None] * nodes
    with tempfile.TemporaryDirectory() as tmp:
        deployment = Deployment(Path(tmp), redis_url, processes, f"cluster-{nodes}nodes-{streams}")
        try:
            deployment.start_signaling()
            node_procs = [deployment.start_node(f"node{i}", i % CORES if pin else None, quotas[i])
                          for i in range(nodes)]
            loadgens = [LoadGenerator(processes.spawn([sys.executable, str(ROOT / "bench" / "loadgen.py")],
                                                      deployment.env, LOGS / f"{deployment.log}-loadgen{i}.log",
                                                      pipes=True))
                        for i in range(min(CORES, len(rooms)))]
            ready_timeout = 20 + 0.5 * streams
            for index, generator in enumerate(loadgens):
                mine = [[f"room{i}", n] for i, n in enumerate(rooms) if i % len(loadgens) == index]
                generator.send({"url": deployment.url, "rooms": mine, "ready_timeout": ready_timeout})
            ready = sum(g.receive(ready_timeout + 60)["ready"] for g in loadgens)
            time.sleep(warmup)
            t0 = time.monotonic() + 0.2
            t1 = t0 + measure
            for generator in loadgens:
                generator.send({"t0": t0, "t1": t1})
            groups = [process_tree(p.pid) for p in node_procs]
            assert deployment.signaling is not None
            signaling, loadgen_pids = [deployment.signaling.pid], [g.proc.pid for g in loadgens]
            time.sleep(max(0.0, t0 - time.monotonic()))
            before = ([cpu_seconds(g) for g in groups], cpu_seconds(signaling), cpu_seconds(loadgen_pids),
                      machine_seconds(), time.monotonic())
            time.sleep(max(0.0, t1 - time.monotonic()))
            after = ([cpu_seconds(g) for g in groups], cpu_seconds(signaling), cpu_seconds(loadgen_pids),
                     machine_seconds(), time.monotonic())
            reports = [g.receive(measure + 30) for g in loadgens]
            placed = [deployment.node_of(f"room{i}") for i in range(len(rooms))]
        finally:
            processes.stop()
            deployment.clean()
            for quota in quotas:
                if quota is not None:
                    quota.remove()
    elapsed = after[-1] - before[-1]

    def pct(a: float, b: float) -> float:
        return (a - b) / elapsed * 100

    node_cpu = [pct(a, b) for a, b in zip(after[0], before[0])]
    signaling_cpu, loadgen_cpu, machine = pct(after[1], before[1]), pct(after[2], before[2]), pct(after[3], before[3])
    return Throughput(nodes, streams, ready, node_cpu, signaling_cpu, loadgen_cpu,
                      machine - sum(node_cpu) - signaling_cpu - loadgen_cpu,
                      [x for r in reports for x in r["fps"]], [x for r in reports for x in r["latencies"]],
                      [placed.count(f"node{i}") for i in range(nodes)])


THROUGHPUT_HEADER = ("| media nodes | N | rooms (per node) | node CPU % (each) | node CPU per stream % | streams/core "
                     "| signaling CPU % | fps mean (min) | held | latency ms p50 / p95 | load gen CPU % | other CPU % |")


def throughput_row(r: Throughput) -> str:
    fps = f"{statistics.mean(r.fps):.1f} ({min(r.fps):.1f})" if r.fps else "–"
    latency = (f"{statistics.median(r.latencies) * 1000:.1f} / {percentile(r.latencies, 0.95) * 1000:.1f}"
               if r.latencies else "–")
    held = "yes" if r.held else "no" if r.ready == r.streams else f"no ({r.ready}/{r.streams} started)"
    return (f"| {r.nodes} | {r.streams} | {len(room_shape(r.streams))}×(1+≤{FANOUT}) "
            f"({' + '.join(str(n) for n in r.rooms_per_node)}) | {' + '.join(f'{c:.0f}' for c in r.node_cpu)} "
            f"| {r.per_stream:.2f} | {100 / r.per_stream:.0f} | {r.signaling_cpu:.0f} | {fps} | {held} | {latency} "
            f"| {r.loadgen_cpu:.0f} | {r.other_cpu:.0f} |")


# -- recovery ---------------------------------------------------------------------------------------------


class Member(Participant):
    """Remembers when the server told it its media failed: detection, as opposed to reconnection."""

    failed_at: float | None = None

    async def _on_media_failed(self, data: dict[str, object]) -> None:
        self.failed_at = time.monotonic()
        await super()._on_media_failed(data)


def decoded(x: Participant, y: Participant, before: dict[tuple[int, int], object] | None = None) -> bool:
    """Whether ``x`` decodes ``y``'s video, on a track other than the one in ``before`` (its connection then)."""
    received = x.video_from(y.id or "")
    old = (before or {}).get((id(x), id(y)))
    return received is not None and received is not old and received.frames > 0


async def recover_round(deployment: Deployment, rooms: dict[str, list[Member]], victim: str
                        ) -> list[tuple[float, float]]:
    """Kill ``victim`` (SIGKILL, its whole process group); for each of its rooms, seconds until its last member was
    told its media failed, and until every member decodes video again."""
    moved = {room: members for room, members in rooms.items() if deployment.node_of(room) == victim}
    before = {(id(x), id(y)): x.video_from(y.id or "") for m in moved.values() for x in m for y in m if x is not y}
    killed = time.monotonic()
    os.killpg(deployment.nodes[victim].pid, signal.SIGKILL)
    recovered: dict[str, float] = {}
    deadline = killed + 30
    while len(recovered) < len(moved) and time.monotonic() < deadline:
        for room, members in moved.items():
            if room not in recovered and all(decoded(x, y, before) for x in members for y in members if x is not y):
                recovered[room] = time.monotonic() - killed
        await asyncio.sleep(0.01)
    deployment.nodes[victim].wait(10)
    return [(max((m.failed_at or math.inf) for m in members) - killed, recovered.get(room, math.inf))
            for room, members in moved.items()]


async def recovery(redis_url: str, rounds: int) -> tuple[list[tuple[float, float]], list[int]]:
    hooks.restrict_host_addresses(["127.0.0.1"])
    processes = Processes()
    times: list[tuple[float, float]] = []
    moved: list[int] = []
    with tempfile.TemporaryDirectory() as tmp:
        deployment = Deployment(Path(tmp), redis_url, processes, "cluster-recovery")
        people: list[Member] = []
        try:
            deployment.start_signaling()
            deployment.start_node("node0", None)
            deployment.start_node("node1", None)
            rooms = {f"ward{r}": [Member(deployment.url, f"ward{r}", f"p{i}", tracks=[VideoStreamTrack()])
                                  for i in range(RECOVERY_MEMBERS)] for r in range(RECOVERY_ROOMS)}
            people = [p for members in rooms.values() for p in members]
            for participant in people:
                await participant.join(timeout=30)
            start = time.monotonic()
            while not all(decoded(x, y) for m in rooms.values() for x in m for y in m if x is not y):
                if time.monotonic() > start + 60:
                    raise RuntimeError("rooms did not start")
                await asyncio.sleep(0.1)
            spare = 2
            for _ in range(rounds):
                hosts = {deployment.node_of(room) for room in rooms}
                victim = max(sorted(h for h in hosts if h), key=lambda n: sum(deployment.node_of(r) == n
                                                                              for r in rooms))
                for member in people:
                    member.failed_at = None
                seconds = await recover_round(deployment, rooms, victim)
                times += seconds
                moved.append(len(seconds))
                deployment.start_node(f"node{spare}", None)  # a replacement, so the next round has somewhere to go
                spare += 1
                await asyncio.sleep(2)
        finally:
            await asyncio.gather(*(p.leave() for p in people), return_exceptions=True)
            processes.stop()
            deployment.clean()
    return times, moved


# -- the run ----------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="N = 16 only, short windows, one recovery round")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0", help="Redis URL (keys under a fresh prefix)")
    parser.add_argument("--recovery", action="store_true", help="only the recovery scenario")
    parser.add_argument("--node-quota", type=float, metavar="PCT",
                        help="limit each media node to PCT %% of one core (a cgroup; needs root) and raise N in steps "
                        f"of {QUOTA_STEP} until a load is not held, for one node and for two (no recovery scenario)")
    parser.add_argument("--no-pin", action="store_true", help="leave media nodes unpinned (a machine shared with "
                        "other work, where a pinned node cannot move off a busy core)")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    ensure_clip()
    LOGS.mkdir(parents=True, exist_ok=True)
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.machine())
    print(f"{date.today()} · {CORES} cores ({model}) · Python {platform.python_version()} · heartbeat "
          f"{HEARTBEAT} s, node timeout {NODE_TIMEOUT} s · logs in {LOGS}\n", flush=True)
    print(THROUGHPUT_HEADER)
    print("|" + "---|" * (THROUGHPUT_HEADER.count("|") - 1), flush=True)
    warmup, measure = (2, 4) if args.quick else (5, 10)
    results: dict[int, list[Throughput]] = {1: [], 2: []}

    def run(nodes: int, streams: int) -> Throughput | None:
        quiet_by = time.monotonic() + 30  # other work on a shared machine skews every figure: wait for quiet
        while background_load(1.0) > QUIET and time.monotonic() < quiet_by:
            pass
        try:
            result = throughput(args.redis, nodes, streams, warmup, measure, pin=not (args.no_pin or args.node_quota),
                                quota_percent=args.node_quota)
        except RuntimeError as exc:
            print(f"| {nodes} | {streams} | failed: {exc} |", flush=True)
            return None
        results[nodes].append(result)
        print(throughput_row(result), flush=True)
        return result

    if args.node_quota:  # each node the bottleneck: climb until a load is not held
        for nodes in (1, 2):
            for streams in range(QUOTA_STEP, QUOTA_MAX + 1, QUOTA_STEP):
                result = run(nodes, streams)
                if result is None or not result.held:
                    break
    elif not args.recovery:
        for streams in (16,) if args.quick else (32, 48, 64, 80):
            for nodes in (1, 2):
                run(nodes, streams)
    largest = {nodes: max((r.streams for r in rows if r.held), default=0) for nodes, rows in results.items()}
    for nodes, rows in results.items():
        if rows:
            cost = statistics.mean(r.per_stream for r in rows)
            limit = f"each limited to {args.node_quota:g} % of a core" if args.node_quota else "each pinned to a core"
            print(f"\n{nodes} media node(s), {limit}: largest N held {largest[nodes]}; node CPU "
                  f"{cost:.2f} % per stream (mean of the rows)", end="")
    if args.node_quota and largest[1]:
        print(f"\ntwo nodes / one node, largest N held: {largest[2] / largest[1]:.2f}×", end="")
    print("\n")
    if args.node_quota:
        return
    rounds = 1 if args.quick else 3
    times, moved = asyncio.run(recovery(args.redis, rounds))
    told, back = [t for t, _ in times], [t for _, t in times]
    print(f"recovery after SIGKILL of the node hosting rooms ({rounds} rounds, rooms moved per round: {moved}, "
          f"{RECOVERY_MEMBERS} live-encoding participants per room), seconds after the kill, median / max:\n"
          f"- every member told media-failed (detection): {statistics.median(told):.2f} / {max(told):.2f}\n"
          f"- every member decoding every other member again: {statistics.median(back):.2f} / {max(back):.2f} "
          f"(each room: {', '.join(f'{t:.2f}' for t in back)})")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        print("\ninterrupted: every process this run started has been stopped", file=sys.stderr)
        sys.exit(130)
