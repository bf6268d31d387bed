"""The recording manifest (docs/recordings.md): written atomically, finished honestly after a clean end or a crash."""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

import av

RECORDING_ID = re.compile(r"^[0-9]{8}T[0-9]{6}Z-[A-Za-z0-9_-]{1,64}-[a-z0-9]{6}$")
TRACK_FILE = re.compile(r"^[0-9a-f]{12}-(audio|video)-[0-9]+\.(webm|mkv)$")


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat()


def write_atomically(path: Path, data: dict[str, Any]) -> None:
    """Replace ``path`` with ``data`` so that a crash leaves either the old or the new manifest, never half."""
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, ensure_ascii=False, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def probe_duration(path: Path) -> Optional[float]:
    """Duration from the packets themselves: a file cut short by a crash has no duration in its header."""
    try:
        with av.open(str(path)) as container:
            stream = container.streams[0]
            last = None
            for packet in container.demux(stream):
                if packet.pts is not None:
                    end = packet.pts + (packet.duration or 0)
                    last = end if last is None else max(last, end)
            if last is None or stream.time_base is None:
                return None
            return float(last * stream.time_base)
    except (av.FFmpegError, OSError, IndexError):
        return None


def finish_track(directory: Path, track: dict[str, Any], duration: Optional[float], complete: bool) -> None:
    """Fill a track's size, checksum and duration once its file will not change again."""
    path = directory / track["file"]
    if path.is_file():
        track["size"] = path.stat().st_size
        track["sha256"] = sha256(path)
        track["duration"] = duration if duration is not None else probe_duration(path)
    track["complete"] = complete and path.is_file()


def recover_unfinished(root: Path, abandoned: Callable[[dict[str, Any]], bool] = lambda manifest: True) -> list[str]:
    """Close the manifests of recordings whose process died: ended uncleanly, at the last write. Returns their ids.

    In a cluster several media nodes share ``root``: ``abandoned`` tells which open recordings are no live node's.
    """
    recovered = []
    if not root.is_dir():
        return recovered
    for directory in sorted(root.iterdir()):
        manifest_path = directory / "manifest.json"
        if not RECORDING_ID.match(directory.name) or directory.is_symlink() or not manifest_path.is_file():
            continue
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if manifest.get("state") != "recording" or not abandoned(manifest):
            continue
        last_write = manifest_path.stat().st_mtime
        for track in manifest["tracks"]:
            path = directory / track["file"]
            if track.get("sha256") is None:
                finish_track(directory, track, None, complete=False)
            if path.is_file():
                last_write = max(last_write, path.stat().st_mtime)
        for participant in manifest["participants"]:
            for session in participant["sessions"]:
                session["left_at"] = session["left_at"] or None
        manifest.update(
            state="interrupted",
            ended_cleanly=False,
            end_reason="crash-recovered",
            ended_at=datetime.datetime.fromtimestamp(last_write, datetime.timezone.utc).isoformat(),
        )
        write_atomically(manifest_path, manifest)
        (directory / "manifest.reserve").unlink(missing_ok=True)
        recovered.append(directory.name)
    return recovered
