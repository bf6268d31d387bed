"""Relay benchmark: server CPU, delivered frame rate and added latency per forwarded video stream.

Usage: ``.venv/bin/python bench/relay.py [--quick]`` (or ``make bench``). Prints a Markdown table.

Each scenario starts a fresh server (Hoichan's packet relay, or ``baseline.py``: aiortc's MediaRelay, which
decodes and re-encodes) and load-generator processes (``loadgen.py``) in which publishers send a pre-encoded
640×480 30 fps VP8 + Opus clip to receive-only subscribers, one publisher and up to ``FANOUT`` subscribers per
room. A forwarded stream is one publisher's video delivered to one subscriber (its audio rides along). After a
warm-up, the server's CPU time (its process tree, so media workers count) is read from ``/proc`` over a fixed
window, while subscribers count the frames that arrive. Everything shares the machine's cores, so the table
gives the cost per stream and the streams one core could carry (100 / cost), not only the largest load held.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import math
import os
import platform
import queue
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import IO, Any

import aiortc
from clip import CACHE, clip_bitrate, ensure_clip

ROOT = Path(__file__).resolve().parent.parent
LOGS = CACHE / "logs"
FANOUT = 8  # subscribers per publisher (room), the default room size
HELD_FPS = 29.0  # a stream is held when it delivers at least this many frames per second...
HELD_LATENCY = 0.1  # ...and 95 % of its frames within this many seconds (a backlog delivers late, not less)
QUIET = 15.0  # % of one core busy before a scenario starts: otherwise wait a little for other work to end
INTERFERENCE = 20.0  # % of one core taken by other processes during a window: the scenario is run again
BUDGET = 420.0  # seconds: no more waiting for quiet or runs again after this, so the run stays near 10 min
CLK_TCK = os.sysconf("SC_CLK_TCK")
CORES = len(os.sched_getaffinity(0))
SERVE = [sys.executable, "-m", "signaling.cli", "serve"]


@dataclass(frozen=True)
class Mode:
    name: str
    command: list[str]
    env: dict[str, str] = field(default_factory=dict)


RELAY = Mode("packet relay", SERVE, {"HOICHAN_MEDIA__WORKERS": "0"})
MEDIARELAY = Mode("aiortc MediaRelay", [sys.executable, str(ROOT / "bench" / "baseline.py")])
ONE_WORKER = Mode("packet relay, 1 worker", SERVE, {"HOICHAN_MEDIA__WORKERS": "1"})
TWO_WORKERS = Mode("packet relay, 2 workers pinned", SERVE,
                   {"HOICHAN_MEDIA__WORKERS": "2", "HOICHAN_MEDIA__PIN_WORKERS": "true"})


@dataclass(frozen=True)
class Timing:
    warmup: float
    measure: float


@dataclass
class Result:
    mode: str
    streams: int
    ready: int  # subscribers that received video before the warm-up
    server_cpu: float  # % of one core
    loadgen_cpu: float  # % of one core, all load-generator processes
    other_cpu: float  # % of one core used by anything else on the machine: should be ~0
    fps: list[float]
    latencies: list[float]  # seconds, every frame of every stream in the window
    healthz: list[float]  # seconds: round trips of GET /healthz, the server's event-loop responsiveness
    loadgen_lag: list[float]  # seconds: how late the load generators' event loops woke up

    @property
    def per_stream(self) -> float:
        return self.server_cpu / self.streams

    @property
    def held(self) -> bool:
        on_time = not self.latencies or percentile(self.latencies, 0.95) <= HELD_LATENCY
        return self.ready == self.streams and len(self.fps) == self.streams and min(self.fps) >= HELD_FPS and on_time


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else math.nan


# -- processes ------------------------------------------------------------------------------------------


_prctl = ctypes.CDLL(None).prctl  # resolved here: between fork and exec the child must not load anything


def _die_with_parent() -> None:
    """Children get SIGTERM if this process dies, even by SIGKILL (prctl PR_SET_PDEATHSIG)."""
    _prctl(1, signal.SIGTERM)


class Processes:
    """Every process a scenario starts, ended (gently, then not) when the scenario ends or is interrupted."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []

    def spawn(
        self, command: list[str], env: dict[str, str], log: Path, pipes: bool = False
    ) -> subprocess.Popen[bytes]:
        with open(log, "wb") as out:
            # A session of their own: Ctrl-C reaches only this script, which then stops them in order.
            proc = subprocess.Popen(command, cwd=ROOT, env=env, stderr=out, start_new_session=True,
                                    preexec_fn=_die_with_parent,  # noqa: PLW1509 (one call, resolved before fork)
                                    stdout=subprocess.PIPE if pipes else out,
                                    stdin=subprocess.PIPE if pipes else subprocess.DEVNULL)
        self.procs.append(proc)
        return proc

    def stop(self) -> None:
        for proc in reversed(self.procs):  # load generators first, then the server
            if proc.poll() is None:
                proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


class LoadGenerator:
    """One ``loadgen.py`` process and its JSON-lines conversation."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        self._lines: queue.Queue[bytes] = queue.Queue()
        assert proc.stdout is not None
        threading.Thread(target=self._read, args=(proc.stdout,), daemon=True).start()

    def _read(self, stream: IO[bytes]) -> None:
        for line in stream:
            self._lines.put(line)
        self._lines.put(b"")  # it exited

    def send(self, message: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(message).encode() + b"\n")
        self.proc.stdin.flush()

    def receive(self, timeout: float) -> dict[str, Any]:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise RuntimeError(f"load generator {self.proc.pid} gave no answer within {timeout:.0f} s") from None
        if not line:
            raise RuntimeError(f"load generator {self.proc.pid} exited (see {LOGS})")
        return dict(json.loads(line))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def healthz(url: str) -> float:
    """Round trip of GET /healthz, seconds (2 s when it times out)."""
    started = time.monotonic()
    try:
        with urllib.request.urlopen(url + "/healthz", timeout=2) as response:
            response.read()
    except (urllib.error.URLError, TimeoutError):
        return 2.0
    return time.monotonic() - started


def wait_listening(url: str, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        if healthz(url) < 2.0:
            return
        time.sleep(0.2)
    raise RuntimeError("server did not start")


# -- CPU from /proc -------------------------------------------------------------------------------------


def process_tree(root: int) -> list[int]:
    """``root`` and its descendants (the server's media workers)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    tree = [root]
    for pid in tree:
        tree += [child for child, parent in parents.items() if parent == pid]
    return tree


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime of these processes (all their threads)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / CLK_TCK


def machine_seconds() -> float:
    """CPU time every core spent busy (not idle or waiting for I/O) since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return (sum(values[:8]) - values[3] - values[4]) / CLK_TCK


def background_load(seconds: float) -> float:
    """How busy the machine is, % of one core: other work skews every figure."""
    before = machine_seconds()
    time.sleep(seconds)
    return (machine_seconds() - before) / seconds * 100


# -- one scenario ---------------------------------------------------------------------------------------


def room_shape(streams: int) -> list[int]:
    """Subscribers per room: one publisher and up to FANOUT subscribers each."""
    return [min(FANOUT, streams - start) for start in range(0, streams, FANOUT)]


def run(mode: Mode, streams: int, timing: Timing) -> Result:
    rooms = room_shape(streams)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    generators = 1 if len(rooms) == 1 else CORES  # several processes so the load may use every core
    LOGS.mkdir(parents=True, exist_ok=True)
    log = f"{mode.name.replace(' ', '-').replace(',', '')}-{streams}"
    processes = Processes()
    with tempfile.TemporaryDirectory() as tmp:
        env = {
            **os.environ,
            "HOICHAN_SERVER__HOST": "127.0.0.1",
            "HOICHAN_SERVER__PORT": str(port),
            "HOICHAN_MEDIA__ICE_ADDRESSES": '["127.0.0.1"]',
            "HOICHAN_MEDIA__ROOM_MAX_PARTICIPANTS": "32",
            "HOICHAN_STORE__PATH": str(Path(tmp) / "data"),
            "HOICHAN_RECORDING__DIRECTORY": str(Path(tmp) / "recordings"),
            "HOICHAN_LOGGING__LEVEL": "WARNING",
            "PYTHONPATH": str(ROOT),  # bench/*.py import media, client and signaling from the checkout
            **mode.env,
        }
        try:
            server = processes.spawn(mode.command, env, LOGS / f"{log}-server.log")
            wait_listening(url, server)
            server_pids = process_tree(server.pid)
            loadgens = [
                LoadGenerator(processes.spawn([sys.executable, str(ROOT / "bench" / "loadgen.py")], env,
                                              LOGS / f"{log}-loadgen{i}.log", pipes=True))
                for i in range(min(generators, len(rooms)))
            ]
            ready_timeout = 20 + 0.5 * streams
            for index, generator in enumerate(loadgens):
                mine = [[f"room{i}", n] for i, n in enumerate(rooms) if i % len(loadgens) == index]
                generator.send({"url": url, "rooms": mine, "ready_timeout": ready_timeout})
            ready = sum(g.receive(ready_timeout + 60)["ready"] for g in loadgens)
            time.sleep(timing.warmup)
            t0 = time.monotonic() + 0.2
            t1 = t0 + timing.measure
            for generator in loadgens:
                generator.send({"t0": t0, "t1": t1})
            loadgen_pids = [g.proc.pid for g in loadgens]
            time.sleep(max(0.0, t0 - time.monotonic()))
            before = (cpu_seconds(server_pids), cpu_seconds(loadgen_pids), machine_seconds(), time.monotonic())
            round_trips = []
            while time.monotonic() < t1 - 0.5:
                round_trips.append(healthz(url))
                time.sleep(0.5)
            time.sleep(max(0.0, t1 - time.monotonic()))
            after = (cpu_seconds(server_pids), cpu_seconds(loadgen_pids), machine_seconds(), time.monotonic())
            reports = [g.receive(timing.measure + 30) for g in loadgens]
        finally:
            processes.stop()
    elapsed = after[3] - before[3]
    server_cpu, loadgen_cpu, machine_cpu = ((a - b) / elapsed * 100 for a, b in zip(after[:3], before[:3]))
    other_cpu = machine_cpu - server_cpu - loadgen_cpu
    return Result(
        mode=mode.name, streams=streams, ready=ready,
        server_cpu=server_cpu, loadgen_cpu=loadgen_cpu, other_cpu=other_cpu,
        fps=[x for r in reports for x in r["fps"]],
        latencies=[x for r in reports for x in r["latencies"]],
        healthz=round_trips,
        loadgen_lag=[x for r in reports for x in r["lag"]],
    )


# -- the run ----------------------------------------------------------------------------------------------


HEADER = ("| media path | N | rooms | server CPU % | per stream % | streams/core | fps mean (min) | held "
          "| latency ms p50 / p95 | /healthz p95 ms | load gen CPU % (lag p95 ms) | other CPU % |")


def row(r: Result) -> str:
    full, partial = divmod(r.streams, FANOUT)  # as room_shape() lays them out
    rooms = " + ".join(filter(None, (f"{full}×(1+{FANOUT})" if full else "", f"1×(1+{partial})" if partial else "")))
    fps = f"{statistics.mean(r.fps):.1f} ({min(r.fps):.1f})" if r.fps else "–"
    held = "yes" if r.held else "no" if r.ready == r.streams else f"no ({r.ready}/{r.streams} started)"
    latency = (f"{statistics.median(r.latencies) * 1000:.1f} / {percentile(r.latencies, 0.95) * 1000:.1f}"
               if r.latencies else "–")
    return (f"| {r.mode} | {r.streams} | {rooms} | {r.server_cpu:.0f} | {r.per_stream:.2f} | {100 / r.per_stream:.0f} "
            f"| {fps} | {held} | {latency} | {percentile(r.healthz, 0.95) * 1000:.0f} "
            f"| {r.loadgen_cpu:.0f} ({percentile(r.loadgen_lag, 0.95) * 1000:.0f}) | {r.other_cpu:.0f} |")


class Bench:
    """Runs scenarios within a time budget, stepping around other work on a shared machine where it can."""

    def __init__(self, timing: Timing, budget: float) -> None:
        self.timing = timing
        self.deadline = time.monotonic() + budget

    def _spare(self) -> float:
        return self.deadline - time.monotonic()

    def _run(self, mode: Mode, streams: int) -> Result:
        wait_until = time.monotonic() + min(20.0, max(0.0, self._spare() - 120))
        while background_load(1.0) > QUIET and time.monotonic() < wait_until:
            pass
        return run(mode, streams, self.timing)

    def measure(self, mode: Mode, streams: int) -> Result | None:
        """One scenario, printed; run once more if other work took a share of the machine meanwhile."""
        try:
            result = self._run(mode, streams)
            if result.other_cpu > INTERFERENCE and self._spare() > 120:
                result = min(result, self._run(mode, streams), key=lambda r: r.other_cpu)
        except RuntimeError as exc:  # e.g. joins time out under overload: the search stops there
            print(f"| {mode.name} | {streams} | failed: {exc} |", flush=True)
            return None
        print(row(result), flush=True)
        return result

    def search(self, mode: Mode, fixed: list[int], step: int, limit: int) -> list[Result]:
        """The fixed loads, then upward by ``step`` while every stream holds, then once halfway into the gap."""
        results: list[Result] = []
        failed: list[int] = []

        def attempt(n: int) -> bool:
            result = self.measure(mode, n)
            if result is not None:
                results.append(result)
            if result is None or not result.held:
                failed.append(n)
                return False
            return True

        for n in fixed:
            held = attempt(n)
        n = fixed[-1]
        while held and n + step <= limit:
            n += step
            held = attempt(n)
        low = max((r.streams for r in results if r.held), default=0)
        high = min((f for f in failed if f > low), default=0)
        if low and high and high - low > step // 4:
            attempt((low + high) // 2)
        return results


def best(results: list[Result]) -> Result | None:
    """The largest load held, which also gives the steadiest per-stream cost."""
    held = [r for r in results if r.held]
    return max(held, key=lambda r: r.streams) if held else None


def at(results: list[Result], streams: int) -> Result | None:
    return next((r for r in results if r.streams == streams), None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke run: N = 1 and 8 only, a few seconds each")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop children on SIGTERM too
    ensure_clip()
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.machine())
    print(f"{date.today()} · {CORES} cores ({model}) · Python {platform.python_version()} · aiortc "
          f"{aiortc.__version__} · clip 640×480 30 fps VP8 {clip_bitrate() / 1000:.0f} kbit/s + Opus · "
          f"{'2 s warm-up, 4 s' if args.quick else '5 s warm-up, 10 s'} measured · logs in {LOGS}\n", flush=True)
    idle = background_load(2.0)
    if idle > QUIET:
        print(f"WARNING: the machine is already {idle:.0f} % busy (of {CORES * 100} %) with other work: each "
              "scenario waits a little for quiet and is run again if disturbed; see the last column\n", flush=True)
    print(HEADER)
    print("|" + "---|" * (HEADER.count("|") - 1), flush=True)
    if args.quick:
        bench = Bench(Timing(2, 4), budget=0)
        relay = [r for n in (1, 8) if (r := bench.measure(RELAY, n)) is not None]
        baseline = [r for n in (1, 8) if (r := bench.measure(MEDIARELAY, n)) is not None]
        workers: list[Result] = []
    else:
        bench = Bench(Timing(5, 10), budget=BUDGET)
        relay = bench.search(RELAY, [1, 8, 32], 16, limit=160)
        baseline = bench.search(MEDIARELAY, [1, 8], 4, limit=40)
        workers = [r for mode in (ONE_WORKER, TWO_WORKERS) if (r := bench.measure(mode, 32)) is not None]
    print()
    summarize(relay, baseline, workers)


def summarize(relay: list[Result], baseline: list[Result], workers: list[Result]) -> None:
    same_n = [(r, b) for r in relay if (b := at(baseline, r.streams)) is not None and r.streams > 1]
    for r, b in same_n:
        print(f"per-stream server CPU at N={r.streams}: MediaRelay {b.per_stream:.2f} % / packet relay "
              f"{r.per_stream:.2f} % = {b.per_stream / r.per_stream:.1f}×")
    top_relay, top_baseline = best(relay), best(baseline)
    if top_relay and top_baseline:
        print(f"largest N held at ≥ {HELD_FPS:.0f} fps on this machine (load generator included): packet relay "
              f"{top_relay.streams}, MediaRelay {top_baseline.streams} = "
              f"{top_relay.streams / top_baseline.streams:.1f}×")
        print(f"projected streams per core (100 / per-stream cost at that N): packet relay "
              f"{100 / top_relay.per_stream:.0f}, MediaRelay {100 / top_baseline.per_stream:.0f} = "
              f"{top_baseline.per_stream / top_relay.per_stream:.1f}×")
    if len(workers) == 2:
        one, two = workers
        print(f"media workers at N={one.streams}: 1 worker {one.per_stream:.2f} %/stream "
              f"({100 / one.per_stream:.0f} streams/core); 2 workers pinned {two.per_stream:.2f} %/stream "
              f"({100 / two.per_stream:.0f} streams/core, {CORES * 100 / two.per_stream:.0f} on all {CORES} cores)")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        print("\ninterrupted: every process this run started has been stopped", file=sys.stderr)
        sys.exit(130)
