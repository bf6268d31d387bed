"""Link-test accuracy benchmark: the full grid of emulated links, imposed against measured.

Usage: ``.venv/bin/python bench/linktest.py [--quick] [--cells N,M,...] [--json FILE]``. Prints a Markdown table.

Each cell runs one link test at the server's default plan (``LinkTestPlan()``, as ``config.yaml`` sets it): the
server's peer (``media/linktest.py``, in a process of its own) against the aiortc client (``client/linktest.py``)
through the user-space link emulator (``client/link_emulator.py``, in the client's process), which imposes the
cell's conditions on both directions: added RTT (half each way), random loss, and a rate limit. The grid is added
RTT 0/100/300 ms × loss 0/2/5/10 % × rate 128/512/2000 kbit/s (36 cells), then four asymmetric links (upload 128
or 512 kbit/s under a 2000 kbit/s download). A measure
passes within the issue's bounds: RTT ±15 ms or ±10 %, loss (both directions together) ±1.5 points of the share
the emulator dropped at random during the test (shown in brackets; see ``dropped``), each throughput ±20 %. The expected verdict tier is the verdict of the imposed conditions themselves; where the imposed
loss sits on one of the verdict's thresholds (10 % is where "audio only" starts), a measurement within its bounds
may fall either side, so the table marks such a cell "≈" when its tier is the verdict of a figure within bounds.
``--quick`` runs five cells, for development.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the package, not bench/signaling.py beside this script

from aiortc import RTCBundlePolicy, RTCConfiguration  # noqa: E402

from client.link_emulator import Impairment, LinkEmulator  # noqa: E402
from client.linktest import LinkTestResponder  # noqa: E402
from media.linktest import LinkTestPeer, LinkTestPlan  # noqa: E402
from signaling.linktests.verdict import VerdictContext, verdict  # noqa: E402

RTTS_MS = (0, 100, 300)
LOSSES = (0.0, 0.02, 0.05, 0.10)
RATES_KBPS = (128, 512, 2000)
ASYMMETRIC = ((100, 0.0, 128, 2000), (100, 0.05, 128, 2000), (300, 0.02, 512, 2000), (0, 0.10, 512, 2000))
"""(added RTT ms, loss, up kbit/s, down kbit/s)."""
QUICK = (0, 16, 23, 31, 36)
RTT_BOUND = (15.0, 0.10)
LOSS_BOUND = 0.015
RATE_BOUND = 0.20


@dataclass(frozen=True)
class Cell:
    rtt_ms: float
    loss: float
    up_kbps: float
    down_kbps: float

    @property
    def label(self) -> str:
        rate = f"{self.up_kbps:g}" if self.up_kbps == self.down_kbps else f"↑{self.up_kbps:g} ↓{self.down_kbps:g}"
        return f"{self.rtt_ms:g} ms, {self.loss * 100:g} %, {rate}"


def grid() -> list[Cell]:
    cells = [Cell(r, loss, k, k) for r in RTTS_MS for loss in LOSSES for k in RATES_KBPS]
    return cells + [Cell(*a) for a in ASYMMETRIC]


def within(measured: float | None, expected: float, absolute: float, relative: float) -> bool:
    return measured is not None and abs(measured - expected) <= max(absolute, relative * expected)


def tier_of(rtt: float, loss: float, up: float, down: float) -> str:
    figures = {"status": "complete", "paths": [{"path": "udp", "ok": True}], "rttMs": rtt, "jitterMs": 0.0,
               "loss": loss, "up": {"kbps": up}, "down": {"kbps": down}}
    return verdict(figures, VerdictContext())["tier"]


def tiers_within_bounds(cell: Cell) -> set[str]:
    """Every tier the verdict gives for figures within the bounds of the cell's conditions (the edges and the
    imposed values of each measure)."""
    def span(value: float, absolute: float, relative: float) -> tuple[float, ...]:
        width = max(absolute, relative * value)
        return (max(value - width, 0.0), value, value + width)
    return {tier_of(r, loss, u, d)
            for r in span(cell.rtt_ms, *RTT_BOUND) for loss in span(cell.loss, LOSS_BOUND, 0)
            for u in span(cell.up_kbps, 0, RATE_BOUND) for d in span(cell.down_kbps, 0, RATE_BOUND)}


def serve(conn: Connection, plan: dict[str, Any], test_id: str) -> None:
    """The server's side of one test, in its own process as on a media server: offer, answer, measurements."""
    async def run() -> None:
        loop = asyncio.get_running_loop()
        done = asyncio.Event()

        async def notify(_test: str, event: str, payload: dict[str, Any]) -> None:
            if event == "linktest-measured":
                conn.send(payload)
                done.set()

        peer = LinkTestPeer(test_id, RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE),
                            LinkTestPlan.from_dict(plan), notify)
        try:
            [offer] = await peer.offers()
            conn.send(offer["sdp"])
            await peer.answer("udp", await loop.run_in_executor(None, conn.recv))
            await asyncio.wait_for(done.wait(), 90)
        finally:
            await peer.close()
    asyncio.run(run())


async def run_cell(cell: Cell, seed: int, plan: LinkTestPlan) -> dict[str, Any]:
    """One link test through the emulated link: the server's peer in a process of its own (its event loop shares
    nothing with the client's and the emulator's, as on two machines); its measurements and the emulator's
    counters."""
    def side(kbps: float) -> Impairment:
        return Impairment(delay_ms=cell.rtt_ms / 2, loss=cell.loss, rate_kbps=kbps)

    loop = asyncio.get_running_loop()
    link = LinkEmulator(up=side(cell.up_kbps), down=side(cell.down_kbps), seed=seed)
    ours, theirs = multiprocessing.Pipe()
    server = multiprocessing.get_context("spawn").Process(target=serve, args=(theirs, plan.as_dict(),
                                                                             f"bench{seed:027d}"), daemon=True)
    server.start()
    responder = LinkTestResponder(emulator=link)
    started = time.monotonic()

    async def receive(timeout: float) -> Any:
        if not await loop.run_in_executor(None, ours.poll, timeout):
            raise TimeoutError("the server's process did not answer")
        return ours.recv()
    try:
        offer = await receive(30)
        ours.send(await responder.answer(offer))
        measured: dict[str, Any] = await receive(90)
    finally:
        await responder.close()
        link.close()
        server.join(10)
        if server.is_alive():
            server.kill()
    measured["seconds"] = round(time.monotonic() - started, 1)
    measured["emulator"] = link.stats()
    return measured


def dropped(m: dict[str, Any]) -> float | None:
    """The share of packets the emulator dropped at random during the test, both ways: the loss the link really
    had. Its seeded draws (one seed per cell) make a "10 %" cell drop 9.0–11.4 % of a test's 2000–3000 packets, the
    same way run after run: judged against the nominal figure, a cell would miss by the emulator's luck. The
    queue's drops (a ramp overfilling the link) are not random loss and are left out."""
    emulator = m.get("emulator")
    if not emulator:
        return None
    packets = emulator["up"]["packets_in"] + emulator["down"]["packets_in"]
    return (emulator["up"]["lost"] + emulator["down"]["lost"]) / packets if packets else None


def judge(cell: Cell, m: dict[str, Any]) -> dict[str, Any]:
    down = (m.get("down") or {}).get("kbps")
    up = (m.get("up") or {}).get("kbps")
    expected_tier = tier_of(cell.rtt_ms, cell.loss, cell.up_kbps, cell.down_kbps)
    real = dropped(m)
    measured_tier = (verdict(m, VerdictContext())["tier"] if m.get("status") == "complete" else "unknown")
    if measured_tier == expected_tier:
        tier_ok = "yes"
    elif measured_tier in tiers_within_bounds(cell):
        tier_ok = "≈"
    else:
        tier_ok = "no"
    return {
        "rtt": within(m.get("rttMs"), cell.rtt_ms, *RTT_BOUND),
        "loss": within(m.get("loss"), real if real is not None else cell.loss, LOSS_BOUND, 0),
        "down": within(down, cell.down_kbps, 0, RATE_BOUND),
        "up": within(up, cell.up_kbps, 0, RATE_BOUND),
        "tier": tier_ok, "expected_tier": expected_tier, "measured_tier": measured_tier,
    }


def mark(ok: bool | str) -> str:
    return {True: "✓", False: "✗"}.get(ok, ok) if isinstance(ok, bool) else {"yes": "✓", "no": "✗"}.get(ok, ok)


def fmt(value: float | None, digits: int = 0) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def row(n: int, cell: Cell, m: dict[str, Any], j: dict[str, Any]) -> str:
    down, up = m.get("down") or {}, m.get("up") or {}
    loss, real = m.get("loss"), dropped(m)
    return " | ".join([
        f"| {n}", cell.label,
        f"{fmt(m.get('rttMs'), 1)} {mark(j['rtt'])}",
        f"{fmt(None if loss is None else loss * 100, 2)} ({fmt(None if real is None else real * 100, 2)}) "
        f"{mark(j['loss'])}",
        f"{fmt(down.get('kbps'))}{'' if down.get('saturated', True) else '+'} {mark(j['down'])}",
        f"{fmt(up.get('kbps'))}{'' if up.get('saturated', True) else '+'} {mark(j['up'])}",
        f"{j['expected_tier']} / {j['measured_tier']} {mark(j['tier'])}",
        f"{m.get('seconds', 0):.0f} |",
    ])


def commit() -> str:
    try:
        out = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True).stdout.strip()
        return out.stdout.strip() + (" (with uncommitted changes)" if dirty else "")
    except OSError:
        return "unknown"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"only cells {', '.join(map(str, QUICK))}")
    parser.add_argument("--cells", default=None, help="comma-separated cell numbers (as in the table)")
    parser.add_argument("--json", type=Path, default=None, help="also write every cell's raw measurements here")
    args = parser.parse_args()
    cells = grid()
    chosen = QUICK if args.quick else tuple(int(c) for c in args.cells.split(",")) if args.cells else range(len(cells))
    plan = LinkTestPlan()
    load_before = os.getloadavg()
    started = time.time()
    print(f"Commit {commit()}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(started))}, "
          f"{platform.machine()} × {os.cpu_count()} cores, load average {load_before[0]:.2f} at the start; "
          f"plan: pings {plan.ping_seconds:g} s every {plan.ping_interval * 1000:g} ms, ramp steps "
          f"{plan.step_seconds:g} s up to {plan.max_kbps:g} kbit/s.\n", flush=True)
    print("| # | added RTT, loss, rate (kbit/s) | RTT ms | loss % (dropped) | down kbit/s | up kbit/s "
          "| tier expected / measured | s |")
    print("|---|---|---|---|---|---|---|---|", flush=True)
    raw, judged = [], []
    for n in chosen:
        cell = cells[n]
        m = await run_cell(cell, seed=1000 + n, plan=plan)
        j = judge(cell, m)
        raw.append({"cell": n, **cell.__dict__, "measured": m, "judged": j})
        judged.append(j)
        print(row(n, cell, m, j), flush=True)
    total = len(judged)
    load_after = os.getloadavg()
    print(f"\nWithin bounds, of {total} cells: " + ", ".join(
        f"{name} {sum(j[key] is True for j in judged)}" for name, key in
        (("RTT", "rtt"), ("loss", "loss"), ("download", "down"), ("upload", "up")))
        + f", tier {sum(j['tier'] == 'yes' for j in judged)} exact + {sum(j['tier'] == '≈' for j in judged)} "
        f"on a threshold (≈). {time.time() - started:.0f} s in all; load average {load_after[0]:.2f} at the end.")
    if args.json is not None:
        args.json.write_text(json.dumps(raw, indent=1))


if __name__ == "__main__":
    asyncio.run(main())
