"""Signaling benchmark: the whole national network online at once, and how fast a consult request rings.

Usage: ``.venv/bin/python bench/signaling.py [--points 1500] [--rate 50] [--seconds 180] [--quick]``.
Prints a Markdown table.

One server process (``hoichan serve``, media in-process with no rooms: ``media.workers: 0``) on a generated
directory of ``--points`` connection points: 30 central hospitals with two points each and one point at each of
the other (district and commune) facilities, every lower facility with three partner hospitals. Each point is one
socket.io client signed in as its own doctor account, in the lobby at its point; central doctors (three specialties
each) are on duty. Then district doctors request ``--rate`` consults a minute, spread evenly, for ``--seconds``;
the first central doctor rung accepts after 3-10 s, as a person would, so rings do not pile up.

Ring latency is measured per rung doctor from the moment the district client sends ``consult-request`` to the
moment that doctor's client receives the ``consult-state`` in which its ring is ``ringing`` (both clients live in
this process: one monotonic clock). Only rings the server started at the request count (those of a later wave
start on a timer, not on the request). The server's resident memory is read from ``/proc/<pid>/status`` idle,
with everyone connected, and every second under load. The client process's own event-loop lag is reported too:
a lagging client would inflate the latency it measures.

Targets (issue 3): p99 ring latency ≤ 100 ms, server RSS ≤ 300 MB.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import resource
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import socketio
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from signaling.accounts import Account, hash_password  # noqa: E402
from signaling.tokens import TokenIssuer  # noqa: E402

SECRET = "bench-secret-for-hoichan-signaling-0123456789"
CENTRAL = 30
CENTRAL_POINTS = 2
PARTNERS = 3
SPECIALTIES_PER_DOCTOR = 3
TARGET_P99_MS = 100.0
TARGET_RSS_MB = 300.0


def percentile(ordered: list[float], q: float) -> float:
    position = (len(ordered) - 1) * q
    low, high = int(position), min(int(position) + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def network(points: int, seed: int = 7) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A national directory with ``points`` connection points, and one doctor account per point."""
    rng = random.Random(seed)
    sample = yaml.safe_load((ROOT / "directory.yaml").read_text(encoding="utf-8"))
    provinces = [p["id"] for p in sample["provinces"]]
    codes = [s["code"] for s in sample["specialties"]]
    facilities: list[dict[str, Any]] = []
    points_out: list[dict[str, Any]] = []
    accounts: list[dict[str, Any]] = []
    central_ids = []
    for n in range(CENTRAL):
        fid = f"bv-tw-{n:02d}"
        central_ids.append(fid)
        facilities.append({"id": fid, "name": f"Bệnh viện Trung ương số {n + 1}", "tier": "central",
                           "province": rng.choice(provinces), "specialties": rng.sample(codes, 8)})  # fmt: skip
        for p in range(CENTRAL_POINTS):
            pid = f"{fid}-hc{p}"
            points_out.append({"id": pid, "facility": fid, "label": f"Phòng hội chẩn {p + 1}"})
            offered = facilities[-1]["specialties"]
            accounts.append({"username": f"bs.{pid}", "display_name": f"PGS. Chuyên gia {pid}", "role": "doctor",
                             "facility": fid, "specialties": rng.sample(offered, SPECIALTIES_PER_DOCTOR),
                             "point": pid, "central": True})  # fmt: skip
    partnerships = []
    for n in range(points - CENTRAL * CENTRAL_POINTS):
        tier = "district" if n % 3 else "commune"
        fid = f"{'ttyt' if tier == 'district' else 'tyt'}-{n:04d}"
        facilities.append({"id": fid, "name": f"{'Trung tâm Y tế' if tier == 'district' else 'Trạm Y tế xã'} {n}",
                           "tier": tier, "province": rng.choice(provinces)})  # fmt: skip
        points_out.append({"id": f"{fid}-hc1", "facility": fid, "label": "Phòng hội chẩn"})
        partnerships.append({"facility": fid, "partners": rng.sample(central_ids, PARTNERS)})
        accounts.append({"username": f"bs.{fid}", "display_name": f"BS. {fid}", "role": "doctor", "facility": fid,
                         "specialties": [], "point": f"{fid}-hc1", "central": False})  # fmt: skip
    directory = {"provinces": sample["provinces"], "specialties": sample["specialties"], "facilities": facilities,
                 "points": points_out, "partnerships": partnerships}  # fmt: skip
    return directory, accounts


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Point:
    account: dict[str, Any]
    sio: socketio.AsyncClient
    seen: set[str] = field(default_factory=set)


@dataclass
class Run:
    sent: dict[str, float] = field(default_factory=dict)  # summary → monotonic time the request was sent
    ring_ms: list[float] = field(default_factory=list)
    ack_ms: list[float] = field(default_factory=list)
    accepting: set[str] = field(default_factory=set)
    accepted: int = 0
    requested: int = 0
    refused: list[str] = field(default_factory=list)
    lag_ms: list[float] = field(default_factory=list)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", type=int, default=1500)
    parser.add_argument("--rate", type=float, default=50.0, help="consults requested per minute")
    parser.add_argument("--seconds", type=float, default=180.0, help="how long consults are requested")
    parser.add_argument("--quick", action="store_true", help="300 points, 60 s (a smoke run)")
    args = parser.parse_args()
    if args.quick:
        args.points, args.seconds = 300, 60.0
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    tmp = Path(tempfile.mkdtemp(prefix="hoichan-bench-signaling-"))
    directory, accounts = network(args.points)
    (tmp / "directory.yaml").write_text(yaml.safe_dump(directory, allow_unicode=True), encoding="utf-8")
    hashed = hash_password("bench-password-not-used")
    entries = [{k: v for k, v in a.items() if k not in ("point", "central")} | {"password_hash": hashed}
               for a in accounts]  # fmt: skip
    for entry in entries:
        if not entry["specialties"]:
            del entry["specialties"]
    (tmp / "accounts.yaml").write_text(yaml.safe_dump(entries, allow_unicode=True), encoding="utf-8")
    port = free_port()
    env = {
        **os.environ,
        "HOICHAN_SERVER__PORT": str(port),
        "HOICHAN_STORE__PATH": str(tmp / "data"),
        "HOICHAN_RECORDING__DIRECTORY": str(tmp / "data" / "recordings"),
        "HOICHAN_DIRECTORY__FILE": str(tmp / "directory.yaml"),
        "HOICHAN_AUTH__ACCOUNTS_FILE": str(tmp / "accounts.yaml"),
        "HOICHAN_AUTH__SECRET": SECRET,
        "HOICHAN_MEDIA__WORKERS": "0",
        "HOICHAN_LOGGING__LEVEL": "WARNING",
    }
    log = open(tmp / "server.log", "wb")
    server = subprocess.Popen([sys.executable, "-m", "signaling.cli", "serve"], cwd=ROOT, env=env, stdout=log,
                              stderr=subprocess.STDOUT)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        await wait_listening(port, server)
        await asyncio.sleep(2)
        rss_idle = rss_mb(server.pid)
        await run(args, url, accounts, server.pid, rss_idle)
    finally:
        server.terminate()
        server.wait(20)
        log.close()


async def wait_listening(port: int, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError("server exited at start")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            await asyncio.sleep(0.1)
    raise RuntimeError("server did not start")


async def run(args: argparse.Namespace, url: str, accounts: list[dict[str, Any]], pid: int, rss_idle: float) -> None:
    issuer = TokenIssuer(SECRET.encode(), __import__("datetime").timedelta(hours=12))
    result = Run()
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    points: list[Point] = []
    timers: list[asyncio.TimerHandle] = []
    accepts: list[asyncio.Future[None]] = []

    def on_state(point: Point) -> Any:
        async def handler(state: dict[str, Any]) -> None:
            now = time.monotonic()
            username = point.account["username"]
            ring = next((r for r in state["rings"] if r["username"] == username), None)
            if ring is None or ring["status"] != "ringing" or state["id"] in point.seen:
                return
            point.seen.add(state["id"])
            sent = result.sent.get(state["summary"])
            started_with_request = _seconds(ring["since"]) - _seconds(state["requestedAt"]) < 0.5
            if sent is not None and started_with_request:
                result.ring_ms.append((now - sent) * 1000)
            if state["id"] not in result.accepting:  # the first doctor to hear it picks up, after a while
                result.accepting.add(state["id"])
                schedule_accept(point, state["id"])

        return handler

    def schedule_accept(point: Point, consult_id: str) -> None:
        def start() -> None:
            accepts.append(asyncio.ensure_future(accept(point, consult_id)))

        timers.append(asyncio.get_running_loop().call_later(random.uniform(3, 10), start))

    async def accept(point: Point, consult_id: str) -> None:
        answer = await point.sio.call("consult-accept", {"consult": consult_id}, timeout=30)
        result.accepted += bool(answer.get("ok"))

    started = time.monotonic()

    async def connect(account: dict[str, Any]) -> None:
        sio = socketio.AsyncClient(reconnection=False, http_session=session)
        point = Point(account, sio)
        sio.on("consult-state", on_state(point))
        token = issuer.issue(Account(account["username"], account["display_name"], "doctor", account["facility"],
                                     tuple(account["specialties"])))  # fmt: skip
        await sio.connect(url, transports=["websocket"], auth={"token": token}, wait_timeout=60)
        answer = await sio.call("lobby-enter", {"point": account["point"]}, timeout=60)
        assert answer.get("ok"), answer
        if account["central"]:
            duty = await sio.call("duty", {"onDuty": True}, timeout=60)
            assert duty.get("ok"), duty
        points.append(point)

    for start in range(0, len(accounts), 50):
        await asyncio.gather(*(connect(a) for a in accounts[start : start + 50]))
    connect_seconds = time.monotonic() - started
    await asyncio.sleep(3)
    rss_connected = rss_mb(pid)

    lag_task = asyncio.ensure_future(measure_lag(result))
    district = [p for p in points if not p.account["central"]]
    codes = sorted({c for p in points if p.account["central"] for c in p.account["specialties"]})
    rss_peak = rss_connected
    cpu_before, wall_before = cpu_seconds(pid), time.monotonic()
    interval = 60.0 / args.rate
    next_at = time.monotonic()
    n = 0
    pending: list[asyncio.Task[None]] = []

    async def request(caller: Point, number: int) -> None:
        summary = f"Ca thử nghiệm số {number}: đau ngực, khó thở"
        payload = {"specialty": random.choice(codes), "urgency": random.choice(["routine", "urgent", "emergency"]),
                   "summary": summary}  # fmt: skip
        result.sent[summary] = time.monotonic()
        answer = await caller.sio.call("consult-request", payload, timeout=30)
        result.ack_ms.append((time.monotonic() - result.sent[summary]) * 1000)
        if answer.get("ok"):
            result.requested += 1
        else:
            result.refused.append(answer["error"]["code"])

    while time.monotonic() - wall_before < args.seconds:
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        pending.append(asyncio.ensure_future(request(random.choice(district), n)))
        n += 1
        next_at += interval
        rss_peak = max(rss_peak, rss_mb(pid))
    await asyncio.gather(*pending)
    await asyncio.sleep(2)
    cpu_load = (cpu_seconds(pid) - cpu_before) / (time.monotonic() - wall_before) * 100
    rss_peak = max(rss_peak, rss_mb(pid))
    lag_task.cancel()
    for timer in timers:  # accepts still to come: the run is over
        timer.cancel()
    await asyncio.gather(*accepts)
    for start in range(0, len(points), 100):
        await asyncio.gather(*(p.sio.disconnect() for p in points[start : start + 100]))
    await session.close()
    report(args, len(points), connect_seconds, rss_idle, rss_connected, rss_peak, cpu_load, result)


async def measure_lag(result: Run) -> None:
    while True:
        before = time.monotonic()
        await asyncio.sleep(0.1)
        result.lag_ms.append((time.monotonic() - before - 0.1) * 1000)


def _seconds(iso: str) -> float:
    import datetime

    return datetime.datetime.fromisoformat(iso).timestamp()


def report(args: argparse.Namespace, connected: int, connect_seconds: float, rss_idle: float, rss_connected: float,
           rss_peak: float, cpu_load: float, result: Run) -> None:  # fmt: skip
    rings = sorted(result.ring_ms)
    acks = sorted(result.ack_ms)
    lag = sorted(result.lag_ms)
    p99 = percentile(rings, 0.99) if rings else float("nan")
    rows = [
        ("connection points connected (socket.io clients, in the lobby)", f"{connected}"),
        ("time to connect and enter the lobby, all of them", f"{connect_seconds:.1f} s"),
        ("server RSS idle / all connected / peak under load",
         f"{rss_idle:.0f} / {rss_connected:.0f} / {rss_peak:.0f} MB"),
        (f"consults requested ({args.rate:g}/min for {args.seconds:g} s) / refused / accepted",
         f"{result.requested} / {len(result.refused)} / {result.accepted}"),
        ("rings measured (rung at the request)", f"{len(rings)}"),
        ("ring latency request → central page notified, p50 / p99 / max",
         f"{percentile(rings, 0.5):.1f} / {p99:.1f} / {rings[-1]:.1f} ms" if rings else "-"),
        ("consult-request acknowledged, p50 / p99",
         f"{percentile(acks, 0.5):.1f} / {percentile(acks, 0.99):.1f} ms" if acks else "-"),
        ("server CPU under load (one process)", f"{cpu_load:.1f} % of a core"),
        ("client process event-loop lag p99 / max", f"{percentile(lag, 0.99):.1f} / {lag[-1]:.1f} ms" if lag else "-"),
        ("machine load average (1 min) at the end, cores", f"{os.getloadavg()[0]:.1f}, {os.cpu_count()}"),
        (f"target p99 ≤ {TARGET_P99_MS:g} ms", "met" if p99 <= TARGET_P99_MS else "NOT met"),
        (f"target RSS ≤ {TARGET_RSS_MB:g} MB", "met" if rss_peak <= TARGET_RSS_MB else "NOT met"),
    ]  # fmt: skip
    width = max(len(r[0]) for r in rows)
    print(f"\n| {'measure'.ljust(width)} | value |\n|{'-' * (width + 2)}|-------|")
    for name, value in rows:
        print(f"| {name.ljust(width)} | {value} |")
    if result.refused:
        print(f"\nrefused requests: {sorted(set(result.refused))}")


if __name__ == "__main__":
    asyncio.run(main())
