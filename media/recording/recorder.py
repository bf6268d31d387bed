"""A room's recording: one file per producer per upstream connection, and the manifest that ties them together.

Frames are reassembled from the relayed RTP packets with aiortc's own jitter buffer and depayloader, and
stamped from their RTP timestamps, so packet loss, muted cameras and late joiners keep a true timeline. A new
upstream (a reconnect) starts a new segment file; each file's timestamps start at 0 and the manifest records
where it starts in the room's timeline.
"""

from __future__ import annotations

import asyncio
import datetime
import errno
import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Optional

from aiortc.codecs import depayload
from aiortc.jitterbuffer import JitterBuffer
from aiortc.rtp import RtpPacket

from ..forwarder import Producer
from .formats import FORMATS, Format
from .manifest import RECORDING_ID, finish_track, now, write_atomically
from .track import TrackWriter

logger = logging.getLogger(__name__)

Alert = Callable[[str], Awaitable[None]]
RESERVE = "manifest.reserve"  # space set aside so a full disk can still record why the recording stopped
RESERVE_BYTES = 64 * 1024


class ProducerRecorder:
    """Turns one producer's packets into frames in its current segment file."""

    def __init__(self, room: "RoomRecorder", producer: Producer) -> None:
        self.room = room
        self.producer = producer
        self.segment = room.last_segment(producer.participant_id, producer.kind)
        self.writer: Optional[TrackWriter] = None
        self._epoch = -1
        self._buffer = JitterBuffer(capacity=128, is_video=True) if producer.kind == "video" else None
        self._first_ts = 0
        self._last_ts = 0
        self._wraps = 0
        self._last_keyframe_request = 0.0

    def feed(self, packet: RtpPacket, codec: Any) -> None:
        if self._epoch != self.producer.epoch:  # a new upstream: its timestamps start anywhere
            self._epoch = self.producer.epoch
            self._close_segment()
            if self._buffer is not None:
                self._buffer = JitterBuffer(capacity=128, is_video=True)
        fmt = FORMATS.get(codec.mimeType.lower())
        if fmt is None:
            return
        if self.writer is not None and fmt is not self.writer.format:  # a renegotiated codec gets its own file
            self._close_segment()
        if self._buffer is None:
            self._write(fmt, packet.payload, packet.timestamp)
            return
        try:
            packet._data = depayload(codec, packet.payload)  # type: ignore[attr-defined]
        except ValueError:
            return
        _, frame = self._buffer.add(packet)
        if frame is not None and frame.data:
            self._write(fmt, frame.data, frame.timestamp)

    def _write(self, fmt: Format, data: bytes, timestamp: int) -> None:
        if self.writer is None:
            size = fmt.size(data)
            if size is None:  # a video file must start with a keyframe
                moment = time.monotonic()
                if moment - self._last_keyframe_request > 1.0:
                    self._last_keyframe_request = moment
                    self.producer.request_keyframe()
                return
            self._open_segment(fmt, size, fmt.header(data))
            self._first_ts = self._last_ts = timestamp
            self._wraps = 0
        if timestamp < self._last_ts and self._last_ts - timestamp > 1 << 31:
            self._wraps += 1  # RTP timestamp wrapped around 2^32
        self._last_ts = timestamp
        assert self.writer is not None
        self.writer.write(data, timestamp + (self._wraps << 32) - self._first_ts, fmt.keyframe(data))

    def _open_segment(self, fmt: Format, size: tuple[int, int], header: bytes) -> None:
        self.segment += 1
        kind = self.producer.kind
        name = f"{self.producer.participant_id}-{kind}-{self.segment}.{fmt.extension}"
        self.writer = TrackWriter(self.room.directory / name, kind, fmt, self.room.track_ended, size, header)
        track: dict[str, Any] = {
            "file": name, "participant_id": self.producer.participant_id, "kind": kind,
            "codec": fmt.name, "segment": self.segment,
            "start_offset": round(time.time() - self.room.started, 3), "duration": None, "size": None,
            "sha256": None, "complete": False,
        }
        if kind == "video":
            track["width"], track["height"] = size
        self.room.add_track(self.writer, track)

    def _close_segment(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


class RoomRecorder:
    """Owns a room's recording directory and manifest; stops everything at the first write error."""

    def __init__(self, root: Path, room_id: str, meta: dict[str, Any], alert: Alert) -> None:
        """``meta["continue"]``: the id of this room's recording whose media node died; it goes on as new segments
        (cluster mode), instead of a new recording starting."""
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
        self.id = f"{stamp}-{room_id}-{''.join(secrets.choice(alphabet) for _ in range(6))}"
        self.started = time.time()
        self.active = True
        self._alert = alert
        self._loop = asyncio.get_running_loop()
        self._producers: dict[Producer, ProducerRecorder] = {}
        self._tracks: dict[TrackWriter, dict[str, Any]] = {}
        self._open: set[TrackWriter] = set()
        self._finished = asyncio.Event()
        self._finished.set()
        self._after_full_disk: asyncio.Future[None] | None = None
        self.manifest: dict[str, Any] = {
            "version": 1, "id": self.id, "room_id": room_id, "consult_id": meta.get("consult_id"),
            "node_id": meta.get("node_id"),
            "started_at": now(), "ended_at": None, "state": "recording", "ended_cleanly": False,
            "end_reason": None, "participants": [], "tracks": [], "errors": [],
        }
        if meta.get("continue"):
            self._reopen(root, str(meta["continue"]), room_id, meta.get("node_id"))
        else:
            self.directory = root / self.id
            self.directory.mkdir(parents=True, exist_ok=False)
        (self.directory / RESERVE).write_bytes(b"\0" * RESERVE_BYTES)
        self._save()

    def _reopen(self, root: Path, recording_id: str, room_id: str, node_id: Any) -> None:
        """Take over the recording a dead media node left open: close its cut-off files, keep its timeline."""
        if not RECORDING_ID.match(recording_id):
            raise ValueError(f"not a recording id: {recording_id!r}")
        self.directory = root / recording_id
        manifest = json.loads((self.directory / "manifest.json").read_text(encoding="utf-8"))
        if manifest.get("room_id") != room_id or manifest.get("state") not in ("recording", "interrupted"):
            raise ValueError(f"recording {recording_id} is not an open recording of room {room_id}")
        moment = now()
        for track in manifest["tracks"]:
            if track.get("sha256") is None:
                finish_track(self.directory, track, None, complete=False)
        for participant in manifest["participants"]:
            if participant["sessions"] and participant["sessions"][-1]["left_at"] is None:
                participant["sessions"][-1]["left_at"] = moment
        manifest.setdefault("resumed", []).append({"at": moment, "node_id": node_id, "after": manifest.get("node_id")})
        manifest.update(state="recording", node_id=node_id, ended_at=None, end_reason=None)
        self.id, self.manifest = recording_id, manifest
        self.started = datetime.datetime.fromisoformat(manifest["started_at"]).timestamp()

    def last_segment(self, participant_id: str, kind: str) -> int:
        """The highest segment number already in the manifest for this participant's track (0: none)."""
        return max((t["segment"] for t in self.manifest["tracks"]
                    if t["participant_id"] == participant_id and t["kind"] == kind), default=0)

    def _save(self) -> None:
        """Write the manifest, or, after the disk filled up, leave it to ``_save_when_writers_closed``."""
        if self._after_full_disk is not None:
            return
        try:
            write_atomically(self.directory / "manifest.json", self.manifest)
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                self._fail(f"cannot write the manifest: {exc}")
                return
            self._fail(f"recording disk is full: {exc.strerror}")
            self._after_full_disk = asyncio.ensure_future(self._save_when_writers_closed())

    async def _save_when_writers_closed(self) -> None:
        """On a full disk: once every file is closed (their last bytes written), give back the reserved space,
        which nothing else of this recording can take any more, and write the manifest with the failure in it."""
        await self._finished.wait()
        (self.directory / RESERVE).unlink(missing_ok=True)
        try:
            write_atomically(self.directory / "manifest.json", self.manifest)
        except OSError as exc:
            logger.error("recording %s: manifest not written even with the reserve: %s", self.id, exc)
        self._after_full_disk = None

    def participant_joined(self, participant_id: str, info: dict[str, Any]) -> None:
        for entry in self.manifest["participants"]:
            if entry["id"] == participant_id:
                entry["sessions"].append({"joined_at": now(), "left_at": None})
                break
        else:
            self.manifest["participants"].append({
                "id": participant_id, "name": info.get("name", ""), "facility": info.get("facility", ""),
                "role": info.get("role", ""), "sessions": [{"joined_at": now(), "left_at": None}],
            })
        self._save()

    def participant_left(self, participant_id: str) -> None:
        for entry in self.manifest["participants"]:
            if entry["id"] == participant_id and entry["sessions"][-1]["left_at"] is None:
                entry["sessions"][-1]["left_at"] = now()
        for producer in [p for p in self._producers if p.participant_id == participant_id]:
            self._producers.pop(producer)._close_segment()
        self._save()

    def feed(self, producer: Producer, packet: RtpPacket, codec: Any) -> None:
        if not self.active:
            return
        recorder = self._producers.get(producer)
        if recorder is None:
            recorder = self._producers[producer] = ProducerRecorder(self, producer)
        recorder.feed(packet, codec)

    def add_track(self, writer: TrackWriter, track: dict[str, Any]) -> None:
        self._tracks[writer] = track
        self._open.add(writer)
        self._finished.clear()
        self.manifest["tracks"].append(track)
        self._save()

    def track_ended(self, writer: TrackWriter) -> None:
        """Called from the writer's thread once its file is closed: checksum there, then report to the loop."""
        track = self._tracks[writer]
        finish_track(self.directory, track, writer.duration, complete=writer.error is None)
        self._loop.call_soon_threadsafe(self._track_closed, writer)

    def _track_closed(self, writer: TrackWriter) -> None:
        self._open.discard(writer)
        if writer.error is not None:
            self._fail(writer.error)
        if not self._open:
            self._finished.set()
        self._save()

    def _fail(self, message: str) -> None:
        """Disk full, unwritable directory: stop recording (the call goes on) and keep what was written."""
        self.manifest["errors"].append({"at": now(), "message": message})
        if not self.active:
            return
        self.active = False
        logger.error("recording %s stopped: %s", self.id, message)
        for recorder in self._producers.values():
            recorder._close_segment()
        asyncio.ensure_future(self._alert(message))

    async def stop(self, reason: str = "room-ended") -> None:
        """Close every file, then the manifest: a clean end."""
        clean = self.active
        self.active = False
        for recorder in self._producers.values():
            recorder._close_segment()
        await self._finished.wait()
        if self._after_full_disk is not None:
            await self._after_full_disk
        self.manifest.update(
            ended_at=now(), state="complete", end_reason=reason,
            ended_cleanly=clean and not self.manifest["errors"],
        )
        self._save()
        (self.directory / RESERVE).unlink(missing_ok=True)
