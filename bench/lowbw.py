"""Low-bandwidth benchmark (issue 6): what a weak site hears and sees, and what the others get from it.

Usage: ``.venv/bin/python bench/lowbw.py [--quick] [--profile NAME]``. Prints a Markdown table.

For each link profile a fresh server runs on this machine and two aiortc sites join one room, both publishing
simulcast video (``client.simulcast``: 80×60, 160×120 and 320×240 VP8 at 40, 120 and 400 kbit/s, 15 fps, with
camera grain so that each layer spends its bitrate) and speech-like Opus with FEC and DTX (``client.speech``).
The weak site W reaches the server through the user-space link emulator (``client.link_emulator``) with the
profile's rates, delay and loss; the strong site S is on loopback. *down* is what W receives from S, *up* what S
receives from W. After a warm-up the run measures a steady window, cuts W's link both ways for 5 s (an outage),
restores it and measures again. Figures:

* **audio loss**: packets missing at the receiver and not repaired by a retransmission (the receivers NACK lost
  speech, as browsers do) or by the next packet's in-band FEC, among those sent in the steady windows (before the
  outage, and from 5 s after the link returns; repairs counted until each window ends, 2 s after its last packet);
* **fps**: video frames decoded per second over the same windows;
* **freezes**: WebRTC's ``freezeCount`` definition (a gap > max(3 × the mean of the last 30 gaps, mean + 150 ms))
  over the whole run after the warm-up, leaving out the one the outage causes, plus any stretch over 2 s without a
  frame at a steady window's start or end (video paused throughout); and the longest of them;
* **recovery**: from the moment the link returns until both a video frame has been decoded and audio has arrived
  again, in each direction (the larger of the two is reported).

Targets: audio loss ≤ 1 %, no freeze longer than 2 s outside the outage, recovery ≤ 3 s.
"""

from __future__ import annotations

import argparse
import asyncio
import fractions
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
from aiortc import MediaStreamTrack
from av import VideoFrame
from relay import LOGS, ROOT, SERVE, Processes, free_port, wait_listening

from client.link_emulator import Impairment, LinkEmulator
from client.participant import Participant, ReceivedTrack
from client.receive_stats import Freeze, freezes
from client.simulcast import Encoding, SimulcastVideo
from client.speech import SpeechTrack
from media import hooks

ENCODINGS = (Encoding("q", 4, 40), Encoding("h", 2, 120), Encoding("f", 1, 400))
OUTAGE = 5.0
SETTLE_AFTER_OUTAGE = 5.0  # the steady window after the outage starts this long after the link returns
TARGET_LOSS, TARGET_FREEZE, TARGET_RECOVERY = 0.01, 2.0, 3.0
REPAIR_WAIT = 2.0  # audio loss counts the packets sent until this long before a window ends: two 1 s round trips


@dataclass(frozen=True)
class Profile:
    name: str
    down_kbps: float
    up_kbps: float
    delay_ms: float  # one way, each direction
    loss: float = 0.0  # each direction

    def impairments(self) -> tuple[Impairment, Impairment]:
        return (Impairment(rate_kbps=self.up_kbps, delay_ms=self.delay_ms, loss=self.loss),
                Impairment(rate_kbps=self.down_kbps, delay_ms=self.delay_ms, loss=self.loss))


# The delay is the profile's latency split over the two directions: a 3G link with 100 ms one way gives 200 ms RTT.
PROFILES = (
    Profile("3G", 780, 330, 100),
    Profile("EDGE", 240, 200, 400),
    Profile("very bad", 1000, 1000, 500, 0.10),
)


class Camera(MediaStreamTrack):
    """320×240 frames at 15 fps: a moving gradient with grain (so that an encoder spends its whole bitrate)."""

    kind = "video"

    def __init__(self, width: int = 320, height: int = 240, fps: int = 15) -> None:
        super().__init__()
        self.width, self.height, self.fps = width, height, fps
        self._n = 0
        self._start: float | None = None
        self._rng = np.random.default_rng(2)

    async def recv(self) -> VideoFrame:
        if self._start is None:
            self._start = time.monotonic()
        await asyncio.sleep(max(0.0, self._start + self._n / self.fps - time.monotonic()))
        self._n += 1
        image = np.zeros((self.height, self.width, 3), dtype=np.uint8)
        image[:, :, 0] = (np.arange(self.width, dtype=np.uint16)[None, :] + self._n * 4) % 256
        image[:, :, 1] = (np.arange(self.height, dtype=np.uint16)[:, None] * 2) % 256
        image += self._rng.integers(0, 48, image.shape, dtype=np.uint8)
        frame = VideoFrame.from_ndarray(image, format="bgr24")
        frame.pts, frame.time_base = int((time.monotonic() - self._start) * 90000), fractions.Fraction(1, 90000)
        return frame


@dataclass
class Direction:
    audio_loss: float
    audio_packets: int
    fps: float
    freezes: int
    longest_freeze: float
    recovery: float | None  # None: never within the run


@dataclass
class Result:
    profile: Profile
    down: Direction
    up: Direction


def measure(video: ReceivedTrack, audio: ReceivedTrack, windows: list[tuple[float, float]], warm: float,
            cut: float, restored: float, end: float) -> Direction:
    assert audio.audio_loss is not None
    expected = lost = 0
    frames = 0
    for since, until in windows:
        figures = audio.audio_loss.figures(since, until, repair_wait=REPAIR_WAIT)
        expected += figures.expected
        lost += figures.lost - figures.recovered
        frames += sum(1 for t in video.frame_times if since <= t < until)
    seconds = sum(until - since for since, until in windows)
    # the outage's own freeze: the gap that contains the cut (its last frame came before the link returned)
    found = [f for f in freezes(video.frame_times, warm, end) if not (f.at < restored and f.at + f.seconds > cut)]
    # a video paused through a window's start or end has no frame there to begin a freeze from: the stretch with no
    # frame at a window's edge counts too (without this, video paused for the whole first window read as no freeze)
    for since, until in windows:
        inside = [t for t in video.frame_times if since <= t < until]
        edges = [since, *inside[:1], *inside[-1:], until]
        for at, gap in ((edges[0], edges[1] - edges[0]), (edges[-2], edges[-1] - edges[-2])):
            if gap > TARGET_FREEZE and not any(f.at <= at + gap and f.at + f.seconds >= at for f in found):
                found.append(Freeze(at, gap))
    first_frame = next((t for t in video.frame_times if t >= restored), None)
    arrivals = audio.audio_loss._arrivals  # noqa: SLF001 (read-only: the first packet after the return)
    first_audio = next((at for at, _, _ in arrivals if at >= restored), None)
    recovery = None if first_frame is None or first_audio is None else max(first_frame, first_audio) - restored
    return Direction(lost / expected if expected else 1.0, expected, frames / seconds, len(found),
                     max((f.seconds for f in found), default=0.0), recovery)


async def run_profile(url: str, profile: Profile, warmup: float, steady: float) -> Result:
    up, down = profile.impairments()
    link = LinkEmulator(up=up, down=down, seed=6)
    room = f"lowbw-{profile.name.replace(' ', '-').lower()}-{os.getpid()}"
    weak = Participant(url, room, "W", tracks=[SpeechTrack()], simulcast=SimulcastVideo(Camera(), ENCODINGS),
                       emulator=link)
    strong = Participant(url, room, "S", tracks=[SpeechTrack(seed=1)], simulcast=SimulcastVideo(Camera(), ENCODINGS))
    try:
        await weak.join(timeout=20)
        await strong.join(timeout=20)
        deadline = time.monotonic() + 30
        while not (weak.video_from(strong.id or "") and strong.video_from(weak.id or "")
                   and weak.audio_from(strong.id or "") and strong.audio_from(weak.id or "")):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{profile.name}: media did not start")
            await asyncio.sleep(0.1)
        warm = time.monotonic() + warmup
        await asyncio.sleep(warmup + steady)
        cut = time.monotonic()
        link.set(up=Impairment(loss=1.0), down=Impairment(loss=1.0))
        await asyncio.sleep(OUTAGE)
        link.set(up=up, down=down)
        restored = time.monotonic()
        await asyncio.sleep(SETTLE_AFTER_OUTAGE + steady)
        end = time.monotonic()
        windows = [(warm, cut), (restored + SETTLE_AFTER_OUTAGE, end)]
        tracks = {}
        for receiver, publisher in ((weak, strong), (strong, weak)):
            video, audio = receiver.video_from(publisher.id or ""), receiver.audio_from(publisher.id or "")
            assert video is not None and audio is not None
            tracks[receiver.name] = measure(video, audio, windows, warm, cut, restored, end)
        return Result(profile, down=tracks["W"], up=tracks["S"])
    finally:
        await asyncio.gather(weak.leave(), strong.leave(), return_exceptions=True)
        link.close()


def recovery_text(seconds: float | None) -> str:
    return "never" if seconds is None else f"{seconds:.1f}"


def row(r: Result) -> str:
    p = r.profile
    link = f"{p.down_kbps:.0f}/{p.up_kbps:.0f} kbit/s, {p.delay_ms:.0f} ms" + (f", {p.loss:.0%} loss" if p.loss else "")
    cells = [p.name, link]
    for d in (r.down, r.up):
        cells += [f"{d.audio_loss:.2%}", f"{d.fps:.1f}", f"{d.freezes} ({d.longest_freeze:.1f} s)",
                  recovery_text(d.recovery)]
    worst = [max(r.down.audio_loss, r.up.audio_loss) <= TARGET_LOSS,
             max(r.down.longest_freeze, r.up.longest_freeze) <= TARGET_FREEZE,
             all(d.recovery is not None and d.recovery <= TARGET_RECOVERY for d in (r.down, r.up))]
    cells.append("yes" if all(worst) else "no: " + ", ".join(
        name for name, ok in zip(("audio", "freeze", "recovery"), worst, strict=True) if not ok))
    return "| " + " | ".join(cells) + " |"


HEADER = ("| profile | link down/up | audio loss ↓ | fps ↓ | freezes ↓ (longest) | recovery ↓ s | audio loss ↑ "
          "| fps ↑ | freezes ↑ (longest) | recovery ↑ s | targets met |\n" + "|---" * 11 + "|")


def commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


async def bench(profiles: list[Profile], warmup: float, steady: float) -> list[Result]:
    hooks.restrict_host_addresses(["127.0.0.1"])  # aioice leaves loopback out; everything here stays on it
    LOGS.mkdir(parents=True, exist_ok=True)
    results = []
    for profile in profiles:
        processes = Processes()
        with tempfile.TemporaryDirectory() as tmp:
            accounts = Path(tmp) / "accounts.json"
            accounts.write_text("[]")
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            env = {**os.environ, "HOICHAN_SERVER__HOST": "127.0.0.1", "HOICHAN_SERVER__PORT": str(port),
                   "HOICHAN_MEDIA__ICE_ADDRESSES": '["127.0.0.1"]', "HOICHAN_STORE__PATH": str(Path(tmp) / "data"),
                   "HOICHAN_RECORDING__DIRECTORY": str(Path(tmp) / "recordings"),
                   "HOICHAN_RECORDING__POLICY": "never", "HOICHAN_AUTH__ACCOUNTS_FILE": str(accounts),
                   "HOICHAN_LOGGING__LEVEL": os.environ.get("LOWBW_LOG", "WARNING"), "PYTHONPATH": str(ROOT)}
            try:
                server = processes.spawn(SERVE, env, LOGS / "lowbw-server.log")
                await asyncio.to_thread(wait_listening, url, server)
                result = await run_profile(url, profile, warmup, steady)
            finally:
                processes.stop()
        print(row(result), flush=True)
        results.append(result)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short windows (a smoke run)")
    parser.add_argument("--profile", choices=[p.name for p in PROFILES], action="append",
                        help="run only this profile (repeatable)")
    args = parser.parse_args()
    profiles = [p for p in PROFILES if not args.profile or p.name in args.profile]
    warmup, steady = (8.0, 6.0) if args.quick else (15.0, 20.0)
    load_before = os.getloadavg()
    print(f"{date.today()}, commit {commit()}, {platform.python_version()}, {os.cpu_count()} cores, load average "
          f"{load_before[0]:.1f} at the start; warm-up {warmup:.0f} s, steady windows {steady:.0f} s before and "
          f"after a {OUTAGE:.0f} s outage\n", flush=True)
    print(HEADER, flush=True)
    asyncio.run(bench(profiles, warmup, steady))
    print(f"\nload average {os.getloadavg()[0]:.1f} at the end", flush=True)


if __name__ == "__main__":
    sys.exit(main())
