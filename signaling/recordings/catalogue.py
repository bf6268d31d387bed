"""What recordings exist: manifests on disk read into typed records, filtered for the admin's search.

The files are the source of truth (docs/recordings.md), so there is no index to keep in step: every listing
rescans the directory, and only manifests whose file changed since the last scan are parsed again.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from .files import MANIFEST, NotFound, RecordingFiles

__all__ = ["Catalogue", "Filter", "Manifest", "Participant", "Track"]

logger = logging.getLogger(__name__)


class _Record(BaseModel):
    # Unknown keys are kept out, not refused: a newer media version may add fields.
    model_config = ConfigDict(extra="ignore", frozen=True)


class Session(_Record):
    joined_at: datetime.datetime | None = None
    left_at: datetime.datetime | None = None


class Participant(_Record):
    id: str
    name: str = ""
    facility: str | None = None
    role: str | None = None
    sessions: tuple[Session, ...] = ()


class Track(_Record):
    file: str
    participant_id: str
    kind: Literal["audio", "video"]
    codec: str | None = None
    segment: int = 1
    start_offset: float = 0.0
    duration: float | None = None
    size: int | None = None
    sha256: str | None = None
    width: int | None = None
    height: int | None = None
    complete: bool | None = None


class RecordingError(_Record):
    at: datetime.datetime | None = None
    message: str


class Manifest(_Record):
    version: Literal[1]
    id: str
    room_id: str
    consult_id: str | None = None
    started_at: datetime.datetime
    ended_at: datetime.datetime | None = None
    state: Literal["recording", "complete", "interrupted"]
    ended_cleanly: bool | None = None
    end_reason: str | None = None
    participants: tuple[Participant, ...] = ()
    tracks: tuple[Track, ...] = ()
    errors: tuple[RecordingError, ...] = ()

    @property
    def duration(self) -> float | None:
        """Seconds from the start to the end of the last track (what a combined file spans)."""
        ends = [t.start_offset + t.duration for t in self.tracks if t.duration is not None]
        if ends:
            return max(ends)
        if self.ended_at is not None:
            return (self.ended_at - self.started_at).total_seconds()
        return None

    @property
    def ended_or_started(self) -> datetime.datetime:
        return self.ended_at or self.started_at

    def track(self, name: str) -> Track | None:
        return next((t for t in self.tracks if t.file == name), None)

    def summary(self) -> dict[str, object]:
        """One row of the admin's list."""
        return {
            "id": self.id,
            "room_id": self.room_id,
            "consult_id": self.consult_id,
            "started_at": self.started_at.isoformat(),
            "ended_at": self.ended_at.isoformat() if self.ended_at else None,
            "state": self.state,
            "duration": self.duration,
            "size": sum(t.size or 0 for t in self.tracks),
            "tracks": len(self.tracks),
            "participants": [{"id": p.id, "name": p.name, "facility": p.facility, "role": p.role}
                             for p in self.participants],
        }


@dataclass(frozen=True)
class Filter:
    """The admin's search; every given criterion must hold. Dates are inclusive, text matches ignore case."""

    start: datetime.datetime | None = None
    end: datetime.datetime | None = None
    facility: str | None = None
    consult: str | None = None
    participant: str | None = None

    def matches(self, manifest: Manifest) -> bool:
        if self.start is not None and manifest.started_at < self.start:
            return False
        if self.end is not None and manifest.started_at > self.end:
            return False
        if self.consult is not None and manifest.consult_id != self.consult:
            return False
        if self.facility is not None and not any(
            _contains(p.facility, self.facility) for p in manifest.participants
        ):
            return False
        if self.participant is not None and not any(
            p.id == self.participant or _contains(p.name, self.participant) for p in manifest.participants
        ):
            return False
        return True


def _contains(text: str | None, needle: str) -> bool:
    return text is not None and needle.casefold() in text.casefold()


class Catalogue:
    def __init__(self, files: RecordingFiles) -> None:
        self.files = files
        # Keyed by the manifest file's identity; None remembers an unreadable one (warned about once).
        self._cache: dict[str, tuple[tuple[int, int, int], Manifest | None]] = {}

    def get(self, recording_id: str) -> Manifest:
        """The recording's manifest; ``NotFound`` if it is missing or unreadable."""
        st = self.files.stat(recording_id, MANIFEST)
        key = (st.st_ino, st.st_mtime_ns, st.st_size)
        cached = self._cache.get(recording_id)
        if cached is None or cached[0] != key:
            cached = self._cache[recording_id] = (key, self._parse(recording_id))
        if cached[1] is None:
            raise NotFound(recording_id)
        return cached[1]

    def _parse(self, recording_id: str) -> Manifest | None:
        try:
            manifest = Manifest.model_validate_json(self.files.read(recording_id, MANIFEST))
        except ValidationError as exc:
            logger.warning("recording %s: unreadable manifest: %s", recording_id, exc.errors()[0]["msg"])
            return None
        if manifest.id != recording_id:
            logger.warning("recording %s: its manifest names another id (%s)", recording_id, manifest.id)
            return None
        return manifest

    def all(self) -> list[Manifest]:
        """Every readable recording, newest first."""
        ids = self.files.ids()
        for gone in self._cache.keys() - set(ids):
            del self._cache[gone]
        return sorted(self._readable(ids), key=lambda m: m.started_at, reverse=True)

    def search(self, query: Filter) -> list[Manifest]:
        return [m for m in self.all() if query.matches(m)]

    def _readable(self, ids: Iterable[str]) -> Iterable[Manifest]:
        for recording_id in ids:
            try:
                yield self.get(recording_id)
            except NotFound:
                continue
