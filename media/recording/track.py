"""One track file, written by its own thread: a slow or failing disk never stalls packet forwarding."""

from __future__ import annotations

import fractions
import logging
import queue
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Optional

import av

logger = logging.getLogger(__name__)

# Clusters of at most a second, flushed as written: a SIGKILL loses at most the last second. Non-live mode
# still writes cues and a duration on a clean close, so finished files seek well in browsers.
MUXER_OPTIONS = {"cluster_time_limit": "1000", "flush_packets": "1"}
QUEUE_LIMIT = 2000  # frames (~60 s of video): beyond this the disk is not keeping up and the track fails


class TrackWriter:
    """Muxes encoded frames into WebM in a thread; reports once when it ends, cleanly or not."""

    def __init__(
        self,
        path: Path,
        kind: str,
        on_end: Callable[["TrackWriter"], None],
        width: int = 0,
        height: int = 0,
    ) -> None:
        self.path = path
        self.kind = kind
        self.clock_rate = 90000 if kind == "video" else 48000
        self.error: Optional[str] = None
        self.last_pts = -1
        self.frames = 0
        self._size = (width, height)
        self._queue: queue.Queue[Optional[tuple[bytes, int, bool]]] = queue.Queue(QUEUE_LIMIT)
        self._on_end = on_end
        self._thread = threading.Thread(target=self._run, name=f"record-{path.name}", daemon=True)
        self._thread.start()

    def write(self, data: bytes, pts: int, keyframe: bool) -> None:
        """Queue one frame (pts in clock units from the file's start); dropped once the track has failed."""
        if self.error is not None or pts <= self.last_pts:
            return
        self.last_pts = pts
        try:
            self._queue.put_nowait((data, pts, keyframe))
        except queue.Full:
            self.error = "recording disk is too slow: track stopped"

    def close(self) -> None:
        self._queue.put(None)

    @property
    def duration(self) -> float:
        return max(0, self.last_pts) / self.clock_rate

    def _run(self) -> None:
        container = None
        try:
            container = av.open(str(self.path), "w", format="webm", options=MUXER_OPTIONS)
            if self.kind == "video":
                stream = container.add_stream("libvpx", rate=30)
                stream.width, stream.height = self._size
            else:
                stream = container.add_stream("libopus", rate=48000)
            time_base = fractions.Fraction(1, self.clock_rate)
            stream.time_base = time_base
            while (item := self._queue.get()) is not None:
                if self.error is not None:
                    continue
                data, pts, keyframe = item
                packet = av.Packet(data)
                packet.pts = packet.dts = pts
                packet.time_base = time_base
                packet.is_keyframe = keyframe
                packet.stream = stream
                container.mux(packet)
                self.frames += 1
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
