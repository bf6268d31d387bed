"""The benchmark's media: a pre-encoded clip, generated once, played as paced packets that never need encoding.

A publisher's sender only re-packetizes ``av.Packet``s, so the load generator spends no CPU on encoding and the
relay sees the same bytes on every run. aiortc's ``MediaPlayer(decode=False, loop=True)`` cannot serve: it stops
pacing after the first loop (DESIGN §4), hence ``PacedPackets``.
"""

from __future__ import annotations

import asyncio
import fractions
import time
from pathlib import Path

import av
import numpy as np
from aiortc import MediaStreamTrack

CACHE = Path(__file__).resolve().parent / ".cache"
WIDTH, HEIGHT, FPS = 640, 480, 30
SECONDS = 10
VIDEO_BITRATE = 600_000
KEYFRAME_INTERVAL = 75  # frames: 2.5 s, which also bounds how long a new subscriber waits for a picture
AUDIO_RATE, AUDIO_FRAME = 48000, 960  # 20 ms Opus frames, one per RTP packet
VIDEO_FILE = CACHE / f"pattern-{WIDTH}x{HEIGHT}-{FPS}fps-{VIDEO_BITRATE // 1000}k-gop{KEYFRAME_INTERVAL}.ivf"
AUDIO_FILE = CACHE / f"tone-{AUDIO_RATE}-{SECONDS}s.ogg"


def _encode_video(path: Path) -> None:
    """A moving pattern with a noisy box, so libvpx has to spend its ~600 kbit/s (a flat pattern costs ~50)."""
    rng = np.random.default_rng(1)
    texture = rng.integers(0, 256, (HEIGHT * 2, WIDTH * 2), dtype=np.uint8)
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH]
    with av.open(str(path), "w", format="ivf") as out:
        stream = out.add_stream("libvpx", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.bit_rate = VIDEO_BITRATE
        stream.gop_size = KEYFRAME_INTERVAL
        # Constant bitrate, fixed keyframe spacing, and keyframes capped at 6× an average frame, as a
        # real-time WebRTC encoder would produce (an unconstrained first keyframe is ~120 kB).
        stream.codec_context.options = {
            "deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0", "auto-alt-ref": "0",
            "minrate": str(VIDEO_BITRATE), "maxrate": str(VIDEO_BITRATE), "keyint_min": str(KEYFRAME_INTERVAL),
            "max-intra-rate": "600", "buf-sz": "1000", "buf-initial-sz": "500", "buf-optimal-sz": "600",
        }
        for i in range(FPS * SECONDS):
            image = np.empty((HEIGHT, WIDTH, 3), np.uint8)
            image[:, :, 0] = (xx + i * 4) % 256
            image[:, :, 1] = (yy * 2 + i * 3) % 256
            ox, oy = (i * 7) % WIDTH, (i * 5) % HEIGHT
            image[:, :, 2] = texture[oy:oy + HEIGHT, ox:ox + WIDTH]
            bx = int((WIDTH - 160) * (0.5 + 0.5 * np.sin(i / 15)))
            image[160:320, bx:bx + 160, :] = rng.integers(0, 256, (160, 160, 3), dtype=np.uint8) // 4 + 96
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode())


def _encode_audio(path: Path) -> None:
    with av.open(str(path), "w", format="ogg") as out:
        stream = out.add_stream("libopus", rate=AUDIO_RATE)
        stream.bit_rate = 32000
        stream.layout = "mono"
        for i in range(SECONDS * AUDIO_RATE // AUDIO_FRAME):
            t = (np.arange(AUDIO_FRAME) + i * AUDIO_FRAME) / AUDIO_RATE
            samples = (np.sin(2 * np.pi * (440 + 100 * np.sin(t)) * t) * 8000).astype(np.int16).reshape(1, -1)
            frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
            frame.sample_rate, frame.pts = AUDIO_RATE, i * AUDIO_FRAME
            out.mux(stream.encode(frame))
        out.mux(stream.encode())


def ensure_clip() -> None:
    """Encode the clip into ``bench/.cache`` unless an earlier run did (about 20 s of libvpx, once)."""
    CACHE.mkdir(exist_ok=True)
    for path, encode in ((VIDEO_FILE, _encode_video), (AUDIO_FILE, _encode_audio)):
        if not path.exists():
            partial = path.with_suffix(".partial" + path.suffix)
            encode(partial)
            partial.rename(path)


def load_packets(path: Path) -> list[bytes]:
    with av.open(str(path)) as container:
        return [bytes(p) for p in container.demux(container.streams[0]) if p.size]


def clip_bitrate() -> float:
    """Average video bitrate of the cached clip, bit/s."""
    return sum(len(p) for p in load_packets(VIDEO_FILE)) * 8 / SECONDS


class PacedPackets(MediaStreamTrack):
    """Loops pre-encoded packets on a monotonic schedule, with timestamps that keep increasing across loops."""

    def __init__(self, kind: str, packets: list[bytes], interval: float, ticks: int, clock_rate: int) -> None:
        super().__init__()
        self.kind = kind
        self._packets = packets
        self._interval = interval
        self._ticks = ticks
        self._time_base = fractions.Fraction(1, clock_rate)
        self._start: float | None = None
        self._n = 0

    async def recv(self) -> av.Packet:
        now = time.monotonic()
        if self._start is None:
            self._start = now
        due = self._start + self._n * self._interval
        if due > now:
            await asyncio.sleep(due - now)
        packet = av.Packet(self._packets[self._n % len(self._packets)])
        packet.pts = packet.dts = self._n * self._ticks
        packet.time_base = self._time_base
        self._n += 1
        return packet


def video_track(packets: list[bytes]) -> PacedPackets:
    return PacedPackets("video", packets, 1 / FPS, 90000 // FPS, 90000)


def audio_track(packets: list[bytes]) -> PacedPackets:
    return PacedPackets("audio", packets, AUDIO_FRAME / AUDIO_RATE, AUDIO_FRAME, AUDIO_RATE)
