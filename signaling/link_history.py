"""Each room's link-quality timeline, kept with its record after the call.

Why: when a consult went badly, the technician needs to see afterwards whose link failed, when and how (loss up or
down, RTT, bitrate); the live ``link-quality`` events are gone by then. Samples arrive every 2 s per participant;
they are buffered and written in one transaction every ``FLUSH_SECONDS``, when the room empties, and at shutdown,
so the event loop never waits on the disk for each one. A crash loses at most the last few seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections import Counter
from typing import Any

from .rooms import Participant
from .store import transaction

__all__ = ["FLUSH_SECONDS", "LinkHistory"]

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
    recv_kbps REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS link_samples_by_room ON link_samples (room_id, at);
"""
_COLUMNS = ("grade", "mos", "rttMs", "jitterMs", "lossUp", "lossDown", "sendKbps", "recvKbps")
_Row = tuple[Any, ...]


class LinkHistory:
    """Buffers ``link-quality`` samples per room and keeps them in the embedded store."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        self._db.executescript(_SCHEMA)
        self._pending: list[_Row] = []
        self._task: asyncio.Task[None] | None = None

    def add(self, participant: Participant, sample: dict[str, Any]) -> None:
        """Keep one sample (the ``link-quality`` payload media sent about ``participant``)."""
        self._pending.append((
            participant.room_id, participant.id, participant.identity.user_id, participant.name,
            participant.facility, float(sample["at"]), *(sample.get(key) for key in _COLUMNS),
        ))

    def flush(self) -> None:
        if not self._pending:
            return
        rows, self._pending = self._pending, []
        with transaction(self._db):
            self._db.executemany(f"INSERT INTO link_samples VALUES ({', '.join('?' * 14)})", rows)

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
        rows = self._db.execute("SELECT DISTINCT facility FROM link_samples WHERE room_id = ?", (room_id,))
        return {row[0] for row in rows}

    def timeline(self, room_id: str) -> list[dict[str, Any]]:
        """Per participant: who, the samples in time order, and the share of sampled time spent in each grade."""
        self.flush()
        rows = self._db.execute(
            "SELECT * FROM link_samples WHERE room_id = ? ORDER BY participant_id, at", (room_id,)
        ).fetchall()
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
            })
        for person in people.values():
            grades = Counter(sample["grade"] for sample in person["samples"])
            total = sum(grades.values())
            person["gradeShare"] = {grade: round(count / total, 3) for grade, count in grades.items()}
        return sorted(people.values(), key=lambda person: person["samples"][0]["at"])
