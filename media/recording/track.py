"""One track file, written by its own thread: a slow or failing disk never stalls packet forwarding."""

from __future__ import annotations

import fractions
import logging
import threading
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Optional

import av

from .formats import Format

logger = logging.getLogger(__name__)

# Clusters of at most a second, flushed as written: a SIGKILL loses at most the last second. Non-live mode
# still writes cues and a duration on a clean close, so finished files seek well in browsers.
MUXER_OPTIONS = {"cluster_time_limit": "1000", "flush_packets": "1"}
QUEUE_LIMIT = 2000  # frames (~60 s of video): beyond this the disk is not keeping up and the track fails
# The writer wakes on a timer, not per frame: waking a thread for each of ~80 frames/s per track cost more CPU
# than the muxing itself (measured: bench/relay.py --recording). A quarter second adds nothing to what a crash
# can lose, since the muxer's clusters are a second long anyway.
DRAIN_INTERVAL = 0.25  # seconds


class TrackWriter:
    """Muxes encoded frames into WebM in a thread; reports once when it ends, cleanly or not."""

    def __init__(
        self,
        path: Path,
        kind: str,
        fmt: Format,
        on_end: Callable[["TrackWriter"], None],
        size: tuple[int, int] = (0, 0),
        header: bytes = b"",
    ) -> None:
        self.path = path
        self.kind = kind
        self.format = fmt
        self.clock_rate = 90000 if kind == "video" else 48000
        self.error: Optional[str] = None
        self.last_pts = -1
        self.frames = 0
        self._size = size
        self._header = header
        self._pending: deque[tuple[bytes, int, bool]] = deque()
        self._closing = threading.Event()
        self._on_end = on_end
        self._thread = threading.Thread(target=self._run, name=f"record-{path.name}", daemon=True)
        self._thread.start()

    def write(self, data: bytes, pts: int, keyframe: bool) -> None:
        """Queue one frame (pts in clock units from the file's start); dropped once the track has failed."""
        if self.error is not None or pts <= self.last_pts or self._closing.is_set():
            return
        self.last_pts = pts
        if len(self._pending) >= QUEUE_LIMIT:
            self.error = "recording disk is too slow: track stopped"
            return
        self._pending.append((data, pts, keyframe))  # deque appends are atomic; the writer drains on its timer

    def close(self) -> None:
        self._closing.set()

    @property
    def duration(self) -> float:
        return max(0, self.last_pts) / self.clock_rate

    def _run(self) -> None:
        container = None
        try:
            with self.path.open("xb"):  # never overwrite a track already recorded, whatever the caller did
                pass
            container = av.open(str(self.path), "w", format=self.format.container, options=MUXER_OPTIONS)
            if self.kind == "video":
                stream = container.add_stream(self.format.muxer_codec, rate=30)
                stream.width, stream.height = self._size
            else:
                stream = container.add_stream(self.format.muxer_codec, rate=48000)
            if self._header:
                stream.codec_context.extradata = self._header
            time_base = fractions.Fraction(1, self.clock_rate)
            stream.time_base = time_base
            while True:
                closing = self._closing.wait(DRAIN_INTERVAL)
                while self._pending and self.error is None:
                    data, pts, keyframe = self._pending.popleft()
                    packet = av.Packet(data)
                    packet.pts = packet.dts = pts
                    packet.time_base = time_base
                    packet.is_keyframe = keyframe
                    packet.stream = stream
                    container.mux(packet)
                    self.frames += 1
                if self.error is not None:
                    self._pending.clear()
                if closing:
                    break
        except (OSError, av.FFmpegError) as exc:
            self.error = f"cannot write {self.path.name}: {exc}"
            logger.error("recording track %s failed: %s", self.path, exc)
        finally:
            if container is not None:
                try:
                    container.close()
                except (OSError, av.FFmpegError) as exc:
                    self.error = self.error or f"cannot finish {self.path.name}: {exc}"
            self._on_end(self)
