"""Relay benchmark: server CPU, delivered frame rate and added latency per forwarded video stream.

Usage: ``.venv/bin/python bench/relay.py [--quick] [--recording]`` (or ``make bench``). Prints Markdown tables.

Each scenario starts a fresh server (Hoichan's packet relay, or ``baseline.py``: aiortc's MediaRelay, which
decodes and re-encodes) and load-generator processes (``loadgen.py``) in which publishers send a pre-encoded
640×480 30 fps VP8 + Opus clip to receive-only subscribers, one publisher and up to ``FANOUT`` subscribers per
room. A forwarded stream is one publisher's video delivered to one subscriber (its audio rides along). After a
warm-up, the server's CPU time (its process tree, so media workers count) is read from ``/proc`` over a fixed
window, while subscribers count the frames that arrive. Everything shares the machine's cores, so the table
gives the cost per stream and the streams one core could carry (100 / cost), not only the largest load held.

The recording scenario runs the same load with recording policy ``never`` and ``always`` (every room recorded: its
publisher's audio and video, a file each; receive-only subscribers send nothing to record), alternately (never,
always, always, never), and gives the CPU that recording adds, and how much of it the recorder's writer threads
take (read per thread). Then every room ends, its publisher leaving last, and the run times, from that last
leave's acknowledgement, until the manifest is complete, ``GET /api/recordings`` lists the recording as complete,
and its first track can be fetched with a Range request and decoded.
"""

from __future__ import annotations

import argparse
import ctypes
import hashlib
import io
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
import av
from clip import CACHE, clip_bitrate, ensure_clip

ROOT = Path(__file__).resolve().parent.parent
LOGS = CACHE / "logs"
FANOUT = 8  # subscribers per publisher (room), the default room size
HELD_FPS = 29.0  # a stream is held when it delivers at least this many frames per second...
HELD_LATENCY = 0.1  # ...and 95 % of its frames within this many seconds (a backlog delivers late, not less)
QUIET = 15.0  # % of one core busy before a scenario starts: otherwise wait a little for other work to end
INTERFERENCE = 20.0  # % of one core taken by other processes during a window: the scenario is run again
BUDGET = 420.0  # seconds: no more waiting for quiet or runs again after this, so the run stays near 10 min
RECORDING_BUDGET = 240.0  # seconds, the same for the recording scenario
RECORDING_TARGET = 10.0  # % that recording may add to the CPU of forwarding the same streams
AVAILABLE_TARGET = 2.0  # seconds from a room's end until its recording is listed and playable
ENDED_TIMEOUT = 20.0  # seconds after the rooms are told to end: a step not seen by then counts as never
POLL = 0.01  # seconds between looks at the manifests on disk (the server is asked only once one is complete)
ADMIN = {"username": "bench", "display_name": "Bench", "role": "admin", "facility": "so-y-te-lai-chau",
         "password": "bench-password"}  # signs in to GET /api/recordings
CLK_TCK = os.sysconf("SC_CLK_TCK")
CORES = len(os.sched_getaffinity(0))
SERVE = [sys.executable, "-m", "signaling.cli", "serve"]


@dataclass(frozen=True)
class Mode:
    name: str
    command: list[str]
    env: dict[str, str] = field(default_factory=dict)
    records: bool = False  # every room is recorded: end the rooms and time their recordings


RELAY = Mode("packet relay", SERVE, {"HOICHAN_MEDIA__WORKERS": "0"})
MEDIARELAY = Mode("aiortc MediaRelay", [sys.executable, str(ROOT / "bench" / "baseline.py")])
ONE_WORKER = Mode("packet relay, 1 worker", SERVE, {"HOICHAN_MEDIA__WORKERS": "1"})
TWO_WORKERS = Mode("packet relay, 2 workers pinned", SERVE,
                   {"HOICHAN_MEDIA__WORKERS": "2", "HOICHAN_MEDIA__PIN_WORKERS": "true"})
NOT_RECORDED = Mode("packet relay, recording never", SERVE,
                    {"HOICHAN_MEDIA__WORKERS": "0", "HOICHAN_RECORDING__POLICY": "never"})
RECORDED = Mode("packet relay, recording always", SERVE,
                {"HOICHAN_MEDIA__WORKERS": "0", "HOICHAN_RECORDING__POLICY": "always"}, records=True)


@dataclass(frozen=True)
class Timing:
    warmup: float
    measure: float


@dataclass(frozen=True)
class Ended:
    """One recorded room after its end: seconds from its last leave's acknowledgement until each step was first
    seen (0 if it already held then; inf if not within ENDED_TIMEOUT)."""

    tracks: int  # recorded tracks (distinct files): one per producer, a publisher's audio and video are two
    duration: float  # seconds of the first track
    leave: float  # seconds, the last leave's round trip: the server answers once the recording is closed
    complete: float  # manifest.json says complete, every track's sha256 filled
    listed: float  # GET /api/recordings lists it as complete
    playable: float  # its first track served for a Range request, checksum right, first frame decoded
    problem: str  # what was wrong with the recording, if anything

    @property
    def available(self) -> float:
        return max(self.complete, self.listed, self.playable)


@dataclass
class Result:
    mode: str
    streams: int
    ready: int  # subscribers that received video before the warm-up
    server_cpu: float  # % of one core
    side_threads_cpu: float  # % of one core: the server's threads besides the main one (recording's writers)
    loadgen_cpu: float  # % of one core, all load-generator processes
    other_cpu: float  # % of one core used by anything else on the machine: should be ~0
    fps: list[float]
    latencies: list[float]  # seconds, every frame of every stream in the window
    healthz: list[float]  # seconds: round trips of GET /healthz, the server's event-loop responsiveness
    loadgen_lag: list[float]  # seconds: how late the load generators' event loops woke up
    ended: list[Ended]  # recorded rooms only

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


# -- recordings -------------------------------------------------------------------------------------------


def sign_in(url: str) -> str:
    body = json.dumps({"username": ADMIN["username"], "password": ADMIN["password"]}).encode()
    request = urllib.request.Request(url + "/api/login", body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return str(json.load(response)["token"])


def admin_get(url: str, token: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}", **(headers or {})})
    with urllib.request.urlopen(request, timeout=10) as response:
        return int(response.status), bytes(response.read())


def manifests(directory: Path) -> dict[str, dict[str, Any]]:
    """Each room's recording manifest, read from disk (manifests are replaced atomically)."""
    found = [json.loads(path.read_text()) for path in directory.glob("*/manifest.json")]
    by_room = {m["room_id"]: m for m in found}
    if len(by_room) != len(found):
        raise RuntimeError("a room was recorded more than once")
    return by_room


def complete(manifest: dict[str, Any]) -> bool:
    return manifest["state"] == "complete" and all(t["sha256"] for t in manifest["tracks"])


def unplayable(url: str, token: str, manifest: dict[str, Any]) -> str | None:
    """What a player does first: fetch the first track with a Range request, then decode its first frame.
    None if that works, else what went wrong."""
    if not manifest["tracks"]:
        return "no track recorded"
    track = manifest["tracks"][0]
    try:
        status, body = admin_get(f"{url}/api/recordings/{manifest['id']}/tracks/{track['file']}", token,
                                 {"Range": "bytes=0-"})
        if status != 206:
            return f"{track['file']}: HTTP {status} for a Range request"
        if hashlib.sha256(body).hexdigest() != track["sha256"]:
            return f"{track['file']}: {len(body)} bytes served, not the {track['size']} the manifest's sha256 is of"
        with av.open(io.BytesIO(body), "r") as container:
            return None if next(container.decode(container.streams[0]), None) is not None else "no frame decoded"
    except (urllib.error.URLError, av.FFmpegError) as exc:
        return f"{track['file']}: {exc}"


def end_rooms(url: str, directory: Path, loadgens: list[LoadGenerator]) -> list[Ended]:
    """End every room, then watch each recording become complete (on disk), then listed, then playable (each
    asked as soon as the step before is seen, as an admin would)."""
    token = sign_in(url)
    for generator in loadgens:
        generator.send({"leave": True})
    seen: dict[str, dict[str, float]] = {}  # room -> step -> time.monotonic() when first seen
    problems: dict[str, str] = {}  # room -> why its track is not playable (yet)
    deadline = time.monotonic() + ENDED_TIMEOUT
    while time.monotonic() < deadline:
        recordings = manifests(directory)
        for room, manifest in recordings.items():
            if complete(manifest):
                seen.setdefault(room, {}).setdefault("complete", time.monotonic())
        if any("complete" in steps and "listed" not in steps for steps in seen.values()):
            _, body = admin_get(url + "/api/recordings", token)
            listed = {row["id"] for row in json.loads(body)["recordings"] if row["state"] == "complete"}
            for room, manifest in recordings.items():
                if manifest["id"] in listed and "complete" in seen.get(room, {}):
                    seen[room].setdefault("listed", time.monotonic())
        for room, manifest in recordings.items():
            steps = seen.get(room, {})
            if "listed" in steps and "playable" not in steps:
                if (problem := unplayable(url, token, manifest)) is None:
                    steps["playable"] = time.monotonic()
                    problems.pop(room, None)
                else:
                    problems[room] = problem
        if recordings and all(len(seen.get(room, {})) == 3 for room in recordings):
            break
        time.sleep(POLL)
    left = {room: times for g in loadgens for room, times in g.receive(60)["left"].items()}
    recordings = manifests(directory)
    if left.keys() - recordings.keys():
        raise RuntimeError(f"rooms not recorded: {sorted(left.keys() - recordings.keys())}")

    def after(room: str, step: str) -> float:
        moment = seen.get(room, {}).get(step)
        return math.inf if moment is None else max(0.0, moment - left[room][1])

    def ended(room: str, manifest: dict[str, Any]) -> Ended:
        files = [t["file"] for t in manifest["tracks"]]
        twice = sorted({f for f in files if files.count(f) > 1})
        notes = [problems[room]] if room in problems else []
        if twice:
            notes.append(f"listed twice: {', '.join(twice)}")
        problem = "; ".join(notes)
        return Ended(tracks=len(set(files)), duration=float(manifest["tracks"][0]["duration"]) if files else 0.0,
                     leave=left[room][1] - left[room][0], complete=after(room, "complete"),
                     listed=after(room, "listed"), playable=after(room, "playable"),
                     problem=f"{manifest['id']}: {problem}" if problem else "")

    return [ended(room, manifest) for room, manifest in recordings.items()]


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


def stat_seconds(stats: list[Path]) -> float:
    """utime + stime from these /proc stat files (a process's covers all its threads)."""
    total = 0
    for stat in stats:
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / CLK_TCK


def cpu_seconds(pids: list[int]) -> float:
    return stat_seconds([Path(f"/proc/{pid}/stat") for pid in pids])


def side_thread_seconds(pid: int) -> float:
    """The threads of a process besides its main thread; with media in-process, the only busy ones while media
    flows are the recorder's file writers."""
    return stat_seconds([task / "stat" for task in Path(f"/proc/{pid}/task").iterdir() if task.name != str(pid)])


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
        accounts = Path(tmp) / "accounts.json"  # JSON is YAML
        accounts.write_text(json.dumps([ADMIN]))
        env = {
            **os.environ,
            "HOICHAN_SERVER__HOST": "127.0.0.1",
            "HOICHAN_SERVER__PORT": str(port),
            "HOICHAN_MEDIA__ICE_ADDRESSES": '["127.0.0.1"]',
            # Loopback subscribers: start their downlink estimate above the clip's 600 kbit/s, or adaptation pauses
            # that single-layer video until its first trial (1-2 s) and the start-up enters the measurement
            "HOICHAN_MEDIA__DOWNLINK_START_KBPS": "5000",
            "HOICHAN_MEDIA__ROOM_MAX_PARTICIPANTS": "32",
            "HOICHAN_STORE__PATH": str(Path(tmp) / "data"),
            "HOICHAN_RECORDING__DIRECTORY": str(Path(tmp) / "recordings"),
            "HOICHAN_AUTH__ACCOUNTS_FILE": str(accounts),
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
            before = (cpu_seconds(server_pids), cpu_seconds(loadgen_pids), machine_seconds(),
                      side_thread_seconds(server.pid), time.monotonic())
            round_trips = []
            while time.monotonic() < t1 - 0.5:
                round_trips.append(healthz(url))
                time.sleep(0.5)
            time.sleep(max(0.0, t1 - time.monotonic()))
            after = (cpu_seconds(server_pids), cpu_seconds(loadgen_pids), machine_seconds(),
                     side_thread_seconds(server.pid), time.monotonic())
            reports = [g.receive(timing.measure + 30) for g in loadgens]
            ended = end_rooms(url, Path(tmp) / "recordings", loadgens) if mode.records else []
        finally:
            processes.stop()
    elapsed = after[-1] - before[-1]
    server_cpu, loadgen_cpu, machine_cpu, side_threads_cpu = (
        (a - b) / elapsed * 100 for a, b in zip(after[:-1], before[:-1]))
    other_cpu = machine_cpu - server_cpu - loadgen_cpu
    return Result(
        mode=mode.name, streams=streams, ready=ready,
        server_cpu=server_cpu, side_threads_cpu=side_threads_cpu, loadgen_cpu=loadgen_cpu, other_cpu=other_cpu,
        fps=[x for r in reports for x in r["fps"]],
        latencies=[x for r in reports for x in r["latencies"]],
        healthz=round_trips,
        loadgen_lag=[x for r in reports for x in r["lag"]],
        ended=ended,
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
    parser.add_argument("--recording", action="store_true", help="only the recording scenario")
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
    timing = Timing(2, 4) if args.quick else Timing(5, 10)
    relay: list[Result] = []
    baseline: list[Result] = []
    workers: list[Result] = []
    if args.quick and not args.recording:
        bench = Bench(timing, budget=0)
        relay = [r for n in (1, 8) if (r := bench.measure(RELAY, n)) is not None]
        baseline = [r for n in (1, 8) if (r := bench.measure(MEDIARELAY, n)) is not None]
    elif not args.recording:
        bench = Bench(timing, budget=BUDGET)
        relay = bench.search(RELAY, [1, 8, 32], 16, limit=160)
        baseline = bench.search(MEDIARELAY, [1, 8], 4, limit=40)
        workers = [r for mode in (ONE_WORKER, TWO_WORKERS) if (r := bench.measure(mode, 32)) is not None]
    bench = Bench(timing, budget=0 if args.quick else RECORDING_BUDGET)
    # never, always, always, never: a slow drift in how fast the shared machine runs weighs on both alike
    order = (NOT_RECORDED, RECORDED) if args.quick else (NOT_RECORDED, RECORDED, RECORDED, NOT_RECORDED)
    recorded = [[r for mode in order if (r := bench.measure(mode, n)) is not None]
                for n in ((8,) if args.quick else (8, 32))]
    print()
    summarize(relay, baseline, workers)
    summarize_recording(recorded)


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


RECORDING_HEADER = ("| N | rooms | recorded tracks | server CPU % never | server CPU % always "
                    "| recording % of a core (writer threads) | per recorded track % | recording adds | other CPU % |")
ENDED_HEADER = "| N | rooms | track s | last leave round trip ms | complete ms | listed ms | playable ms | ≤ 2 s |"


def mean_and_runs(values: list[float]) -> str:
    return f"{statistics.mean(values):.1f} ({', '.join(f'{v:.1f}' for v in values)})"


def p50_max(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:.0f} / {max(values) * 1000:.0f}"


def summarize_recording(loads: list[list[Result]]) -> None:
    """Recording against forwarding the same streams; then, per room, how soon its recording was available."""
    rows = [(never, always) for runs in loads
            if (never := [r for r in runs if r.mode == NOT_RECORDED.name])
            and (always := [r for r in runs if r.mode == RECORDED.name])]
    if not rows:
        return
    print(f"\nrecording, mean (runs) of each: a recorded track is one producer's file, so a publisher's audio and "
          f"video are two; target ≤ {RECORDING_TARGET:.0f} % on top of forwarding\n")
    print(RECORDING_HEADER)
    print("|" + "---|" * (RECORDING_HEADER.count("|") - 1))
    for never, always in rows:
        tracks = statistics.mean(sum(e.tracks for e in r.ended) for r in always)
        off, on = statistics.mean(r.server_cpu for r in never), statistics.mean(r.server_cpu for r in always)
        writers = statistics.mean(r.side_threads_cpu for r in always)
        other = ", ".join(f"{r.other_cpu:.0f}" for r in never + always)
        print(f"| {never[0].streams} | {len(always[0].ended)} | {tracks:g} "
              f"| {mean_and_runs([r.server_cpu for r in never])} | {mean_and_runs([r.server_cpu for r in always])} "
              f"| {on - off:.1f} ({writers:.1f}) | {(on - off) / tracks:.2f} | {(on - off) / off * 100:+.0f} % "
              f"| {other} |")
    print(f"\nfrom each room's last leave acknowledged until its recording is complete, listed and playable "
          f"(median / max over the rooms of every recorded run; target ≤ {AVAILABLE_TARGET:.0f} s)\n")
    print(ENDED_HEADER)
    print("|" + "---|" * (ENDED_HEADER.count("|") - 1))
    ended = [(r.streams, e) for _, always in rows for r in always for e in r.ended]
    for n in [*dict.fromkeys(streams for streams, _ in ended), "all"]:
        rooms = [e for streams, e in ended if n in (streams, "all")]
        met = max(e.available for e in rooms) <= AVAILABLE_TARGET
        print(f"| {n} | {len(rooms)} | {min(e.duration for e in rooms):.1f}–{max(e.duration for e in rooms):.1f} "
              f"| {p50_max([e.leave for e in rooms])} | {p50_max([e.complete for e in rooms])} "
              f"| {p50_max([e.listed for e in rooms])} | {p50_max([e.playable for e in rooms])} "
              f"| {'yes' if met else 'no'} |")
    for _, e in ended:
        if e.problem:
            print(f"- {e.problem}")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        print("\ninterrupted: every process this run started has been stopped", file=sys.stderr)
        sys.exit(130)
