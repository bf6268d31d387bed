"""Each room's link-quality timeline, kept with its record after the call.

Why: when a consult went badly, the technician needs to see afterwards whose link failed, when and how (loss up or
down, RTT, bitrate); the live ``link-quality`` events are gone by then. Samples arrive every 2 s per participant (sooner on a grade change);
they are buffered and written in one transaction every ``FLUSH_SECONDS``, when the room empties, and at shutdown,
so the event loop never waits on the disk for each one. A crash loses at most the last few seconds. Where they are
kept is a ``SampleStore``: the embedded store (``SqliteSamples``), or Redis in a cluster
(``cluster.link_samples.RedisSamples``), where a room's samples from every signaling process end up together.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from .rooms import Participant
from .store import transaction

__all__ = ["FIELDS", "FLUSH_SECONDS", "LinkHistory", "SampleStore", "SqliteSamples"]

logger = logging.getLogger(__name__)

FLUSH_SECONDS = 10.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS link_samples (
    room_id TEXT NOT NULL,
    participant_id TEXT NOT NULL,
    username TEXT,
    name TEXT NOT NULL,
    facility TEXT NOT NULL,
    at REAL NOT NULL,
    grade TEXT NOT NULL,
    mos REAL NOT NULL,
    rtt_ms REAL,
    jitter_ms REAL,
    loss_up REAL,
    loss_down REAL,
    send_kbps REAL NOT NULL,
    recv_kbps REAL NOT NULL,
    adaptation TEXT
);
CREATE INDEX IF NOT EXISTS link_samples_by_room ON link_samples (room_id, at);
"""
_COLUMNS = ("grade", "mos", "rttMs", "jitterMs", "lossUp", "lossDown", "sendKbps", "recvKbps")
FIELDS = ("room_id", "participant_id", "username", "name", "facility", "at", "grade", "mos", "rtt_ms", "jitter_ms",
          "loss_up", "loss_down", "send_kbps", "recv_kbps", "adaptation")  # fmt: skip
"""A sample's fields, in the order of a row."""
_MAX_PENDING = 100_000  # samples kept while the store cannot be written (about an hour of a 30-person room)
_Row = tuple[Any, ...]


class SampleStore(Protocol):
    def write(self, rows: Sequence[_Row]) -> None:
        """Keep these rows (``FIELDS`` order) all together, or none."""

    def rows(self, room_id: str) -> list[Mapping[str, Any]]:
        """A room's samples, by participant then time."""

    def facilities(self, room_id: str) -> set[str]:
        """The facilities whose participants were sampled in the room."""


class SqliteSamples:
    """The samples in the embedded store."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        self._db.executescript(_SCHEMA)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(link_samples)")}
        if "adaptation" not in columns:  # a store from before adaptation was kept
            self._db.execute("ALTER TABLE link_samples ADD COLUMN adaptation TEXT")

    def write(self, rows: Sequence[_Row]) -> None:
        with transaction(self._db):
            self._db.executemany(f"INSERT INTO link_samples VALUES ({', '.join('?' * len(FIELDS))})", rows)

    def rows(self, room_id: str) -> list[Mapping[str, Any]]:
        return self._db.execute(
            "SELECT * FROM link_samples WHERE room_id = ? ORDER BY participant_id, at", (room_id,)
        ).fetchall()

    def facilities(self, room_id: str) -> set[str]:
        rows = self._db.execute("SELECT DISTINCT facility FROM link_samples WHERE room_id = ?", (room_id,))
        return {row[0] for row in rows}


class LinkHistory:
    """Buffers ``link-quality`` samples per room and keeps them in a ``SampleStore``."""

    def __init__(self, store: SampleStore) -> None:
        self._store = store
        self._pending: list[_Row] = []
        self._task: asyncio.Task[None] | None = None

    def add(self, participant: Participant, sample: dict[str, Any]) -> None:
        """Keep one sample (the ``link-quality`` payload media sent about ``participant``)."""
        self._pending.append((
            participant.room_id, participant.id, participant.identity.user_id, participant.name,
            participant.facility, float(sample["at"]), *(sample.get(key) for key in _COLUMNS),
            json.dumps(sample["adaptation"]) if sample.get("adaptation") is not None else None,
        ))

    def flush(self) -> None:
        """Write the buffered samples; if the store cannot be written now (Redis unreachable), keep them for the
        next flush (the oldest are dropped past ``_MAX_PENDING``)."""
        if not self._pending:
            return
        rows, self._pending = self._pending, []
        try:
            self._store.write(rows)
        except Exception as exc:  # noqa: BLE001 - kept for later, whatever the store's failure
            self._pending = (rows + self._pending)[-_MAX_PENDING:]
            logger.warning("link-quality samples not written yet (%s); %d kept for the next try", exc,
                           len(self._pending))

    def room_closed(self, room_id: str) -> None:
        self.flush()

    async def start(self) -> None:
        async def flush_now_and_then() -> None:
            while True:
                await asyncio.sleep(FLUSH_SECONDS)
                self.flush()

        self._task = asyncio.create_task(flush_now_and_then())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.flush()

    def facilities(self, room_id: str) -> set[str]:
        """The facilities whose participants were sampled in ``room_id``."""
        self.flush()
        return self._store.facilities(room_id)

    def timeline(self, room_id: str) -> list[dict[str, Any]]:
        """Per participant: who, the samples in time order, and the share of sampled time spent in each grade."""
        self.flush()
        rows = self._store.rows(room_id)
        people: dict[str, dict[str, Any]] = {}
        for row in rows:
            person = people.setdefault(row["participant_id"], {
                "participantId": row["participant_id"], "username": row["username"], "name": row["name"],
                "facility": row["facility"], "samples": [],
            })
            person["samples"].append({
                "at": row["at"], "grade": row["grade"], "mos": row["mos"], "rttMs": row["rtt_ms"],
                "jitterMs": row["jitter_ms"], "lossUp": row["loss_up"], "lossDown": row["loss_down"],
                "sendKbps": row["send_kbps"], "recvKbps": row["recv_kbps"],
                "adaptation": json.loads(row["adaptation"]) if row["adaptation"] is not None else None,
            })
        for person in people.values():
            grades = Counter(sample["grade"] for sample in person["samples"])
            total = sum(grades.values())
            person["gradeShare"] = {grade: round(count / total, 3) for grade, count in grades.items()}
        return sorted(people.values(), key=lambda person: person["samples"][0]["at"])
