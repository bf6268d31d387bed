"""Recordings on disk as media writes them (docs/recordings.md), from real VP8/Opus WebM clips made by ffmpeg."""

from __future__ import annotations

import datetime
import hashlib
import json
import secrets
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CLIP_SECONDS = 3.0
FFMPEG = ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-y"]
LIVE = ["-live", "1", "-cluster_time_limit", "1000", "-f", "webm"]  # what the recorder writes: no cues, no duration


def _ffmpeg(*args: str) -> None:
    subprocess.run([*FFMPEG, *args], check=True, timeout=60)


def make_clips(out: Path) -> dict[str, Path]:
    """3-second clips: ``video`` (320×240), ``video-resize`` (160×120 then 640×480, as a sender adapting to
    bandwidth does), ``audio`` (Opus 440 Hz)."""
    vp8 = ["-c:v", "libvpx", "-b:v", "200k", "-deadline", "realtime", "-cpu-used", "8"]
    _ffmpeg("-f", "lavfi", "-i", f"testsrc=size=320x240:rate=15:duration={CLIP_SECONDS}", *vp8, *LIVE,
            str(out / "video.webm"))
    half = CLIP_SECONDS / 2
    for name, size in (("small", "160x120"), ("large", "640x480")):
        _ffmpeg("-f", "lavfi", "-i", f"testsrc2=size={size}:rate=15:duration={half}", *vp8, "-f", "webm",
                 str(out / f"{name}.webm"))
    (out / "parts.txt").write_text("file small.webm\nfile large.webm\n")
    _ffmpeg("-f", "concat", "-i", str(out / "parts.txt"), "-c", "copy", *LIVE, str(out / "video-resize.webm"))
    _ffmpeg("-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={CLIP_SECONDS}", "-c:a", "libopus",
            "-b:a", "32k", *LIVE, str(out / "audio.webm"))
    return {name: out / f"{name}.webm" for name in ("video", "video-resize", "audio")}


@dataclass
class Person:
    name: str
    facility: str
    offset: float = 0.0
    """Seconds from the recording's start to this person's first frame."""
    role: str = "doctor"
    id: str = field(default_factory=lambda: secrets.token_hex(6))


DEFAULT_PEOPLE = (
    ("BS. Giàng A Páo", "TTYT Mường Tè", 0.0),
    ("PGS. Nguyễn Văn Tâm", "BV Bạch Mai", 1.5),
)


@dataclass
class RecordingMaker:
    """Writes recording directories into ``root``; ``make()`` returns the new recording's id."""

    root: Path
    clips: dict[str, Path]

    def make(
        self,
        *,
        started: datetime.datetime | None = None,
        state: str = "complete",
        consult_id: str | None = None,
        room: str = "hoi-chan-thu",
        people: tuple[tuple[str, str, float], ...] = DEFAULT_PEOPLE,
    ) -> str:
        started = started or datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=10)
        recording_id = f"{started:%Y%m%dT%H%M%SZ}-{room}-{secrets.token_hex(3)}"
        directory = self.root / recording_id
        directory.mkdir(parents=True)
        participants, tracks = [], []
        for n, (name, facility, offset) in enumerate(people):
            person = Person(name, facility, offset)
            participants.append({
                "id": person.id, "name": name, "facility": facility, "role": person.role,
                "sessions": [{"joined_at": (started + datetime.timedelta(seconds=offset)).isoformat(),
                              "left_at": None if state == "recording" else
                              (started + datetime.timedelta(seconds=offset + CLIP_SECONDS)).isoformat()}],
            })  # fmt: skip
            for kind, clip in (("video", "video-resize" if n == 0 else "video"), ("audio", "audio")):
                file = f"{person.id}-{kind}-1.webm"
                shutil.copyfile(self.clips[clip], directory / file)
                data = (directory / file).read_bytes()
                closed = state != "recording"
                tracks.append({
                    "file": file, "participant_id": person.id, "kind": kind,
                    "codec": "VP8" if kind == "video" else "opus", "segment": 1, "start_offset": offset,
                    "duration": CLIP_SECONDS if closed else None, "size": len(data) if closed else None,
                    "sha256": hashlib.sha256(data).hexdigest() if closed else None,
                    "width": 320 if kind == "video" else None, "height": 240 if kind == "video" else None,
                    "complete": closed,
                })  # fmt: skip
        end = max(p[2] for p in people) + CLIP_SECONDS
        manifest: dict[str, Any] = {
            "version": 1, "id": recording_id, "room_id": room, "consult_id": consult_id,
            "started_at": started.isoformat(),
            "ended_at": None if state == "recording" else (started + datetime.timedelta(seconds=end)).isoformat(),
            "state": state, "ended_cleanly": None if state == "recording" else state == "complete",
            "end_reason": None if state == "recording" else "room-ended",
            "participants": participants, "tracks": tracks, "errors": [],
        }  # fmt: skip
        (directory / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=1))
        return recording_id

    def manifest(self, recording_id: str) -> dict[str, Any]:
        return json.loads((self.root / recording_id / "manifest.json").read_text())

    def track(self, recording_id: str, kind: str = "video", person: int = 0) -> str:
        """The file name of one person's (in manifest order) first track of a kind."""
        manifest = self.manifest(recording_id)
        owner = manifest["participants"][person]["id"]
        return next(t["file"] for t in manifest["tracks"] if t["participant_id"] == owner and t["kind"] == kind)
