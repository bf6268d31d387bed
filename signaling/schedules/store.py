"""Schedules and their opened occurrences in the embedded SQLite store.

An occurrence row is written when the scheduler opens a session, under a primary key of (schedule, start time): the
insert that succeeds is the one that notifies, so a session opens once only, across restarts and even with two
processes on one store. A deleted schedule is kept (marked deleted): the rooms it opened stay closed to outsiders
and their records keep their meaning.

``ScheduleRecords`` is what the scheduler and the routes use; a cluster keeps schedules and opened occurrences in
Redis instead (``cluster/schedules.py``), chosen in ``signaling/records.py``.
"""

from __future__ import annotations

import datetime
import json
import sqlite3
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol
from zoneinfo import ZoneInfo

from .rules import OneOff, Rule, Weekly

__all__ = ["Schedule", "ScheduleRecords", "ScheduleStore", "from_row", "new_schedule", "to_row"]

UTC = datetime.UTC
_SCHEMA = """
CREATE TABLE IF NOT EXISTS schedules (
    id TEXT PRIMARY KEY,
    title TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('weekly', 'once')),
    weekday INTEGER,
    local_time TEXT,
    at TEXT,
    timezone TEXT NOT NULL,
    duration_minutes INTEGER NOT NULL,
    specialty TEXT,
    accounts TEXT NOT NULL,
    facilities TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at REAL NOT NULL,
    deleted_at REAL
);
CREATE TABLE IF NOT EXISTS schedule_occurrences (
    schedule_id TEXT NOT NULL REFERENCES schedules (id),
    starts_at TEXT NOT NULL,
    room_id TEXT NOT NULL UNIQUE,
    opened_at REAL NOT NULL,
    PRIMARY KEY (schedule_id, starts_at)
);
"""


@dataclass(frozen=True)
class Schedule:
    id: str
    title: str
    kind: Literal["weekly", "once"]
    weekday: int | None
    local_time: datetime.time | None
    at: datetime.datetime | None
    timezone: str
    duration_minutes: int
    specialty: str | None
    accounts: tuple[str, ...]
    facilities: tuple[str, ...]
    created_by: str
    created_at: float
    deleted: bool = False

    @property
    def rule(self) -> Rule:
        if self.kind == "weekly":
            assert self.weekday is not None and self.local_time is not None
            return Weekly(self.weekday, self.local_time, ZoneInfo(self.timezone))
        assert self.at is not None
        return OneOff(self.at)

    @property
    def duration(self) -> datetime.timedelta:
        return datetime.timedelta(minutes=self.duration_minutes)

    def room_for(self, starts_at: datetime.datetime) -> str:
        """One room per occurrence, so each session has its own consult record: ``lich-<id>-<local start>``."""
        return f"lich-{self.id}-{starts_at.astimezone(ZoneInfo(self.timezone)):%Y%m%d%H%M}"

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "kind": self.kind,
            "weekday": self.weekday,
            "time": None if self.local_time is None else self.local_time.strftime("%H:%M"),
            "at": None if self.at is None else self.at.isoformat(),
            "timezone": self.timezone,
            "durationMinutes": self.duration_minutes,
            "specialty": self.specialty,
            "accounts": list(self.accounts),
            "facilities": list(self.facilities),
            "createdBy": self.created_by,
        }


class ScheduleRecords(Protocol):
    def add(self, **fields: Any) -> Schedule:
        """A new schedule from ``Schedule``'s fields (all but ``id``, ``created_at``, ``deleted``)."""

    def get(self, schedule_id: str) -> Schedule | None:
        """Deleted ones included."""

    def active(self) -> list[Schedule]:
        """Schedules not deleted, oldest first."""

    def delete(self, schedule_id: str) -> bool:
        """Mark deleted; False if there is no such schedule (or it was deleted already)."""

    def claim(self, schedule: Schedule, starts_at: datetime.datetime) -> bool:
        """Record that this occurrence opens now; False if it was opened before (here or by another process)."""

    def opened(self, schedule_id: str) -> list[dict[str, Any]]:
        """The occurrences opened, oldest first: ``{"startsAt", "room", "openedAt"}``."""


_COLUMNS = ("id", "title", "kind", "weekday", "local_time", "at", "timezone", "duration_minutes", "specialty",
            "accounts", "facilities", "created_by", "created_at")  # fmt: skip


def new_schedule(**fields: Any) -> Schedule:
    return Schedule(id=uuid.uuid4().hex[:10], created_at=time.time(), **fields)


def to_row(schedule: Schedule) -> dict[str, Any]:
    """The stored form (``_COLUMNS``): both stores keep the same values."""
    return {
        "id": schedule.id, "title": schedule.title, "kind": schedule.kind, "weekday": schedule.weekday,
        "local_time": None if schedule.local_time is None else schedule.local_time.strftime("%H:%M"),
        "at": None if schedule.at is None else schedule.at.astimezone(UTC).isoformat(),
        "timezone": schedule.timezone, "duration_minutes": schedule.duration_minutes,
        "specialty": schedule.specialty, "accounts": json.dumps(schedule.accounts),
        "facilities": json.dumps(schedule.facilities), "created_by": schedule.created_by,
        "created_at": schedule.created_at,
    }  # fmt: skip


class ScheduleStore:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        db.executescript(_SCHEMA)

    def add(self, **fields: Any) -> Schedule:
        schedule = new_schedule(**fields)
        row = to_row(schedule)
        self._db.execute(
            "INSERT INTO schedules VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL)", [row[c] for c in _COLUMNS]
        )
        return schedule

    def get(self, schedule_id: str) -> Schedule | None:
        row = self._db.execute("SELECT * FROM schedules WHERE id = ?", (schedule_id,)).fetchone()
        return None if row is None else from_row(row)

    def active(self) -> list[Schedule]:
        rows = self._db.execute("SELECT * FROM schedules WHERE deleted_at IS NULL ORDER BY created_at").fetchall()
        return [from_row(row) for row in rows]

    def delete(self, schedule_id: str) -> bool:
        cursor = self._db.execute(
            "UPDATE schedules SET deleted_at = ? WHERE id = ? AND deleted_at IS NULL", (time.time(), schedule_id)
        )
        return cursor.rowcount == 1

    def claim(self, schedule: Schedule, starts_at: datetime.datetime) -> bool:
        cursor = self._db.execute(
            "INSERT OR IGNORE INTO schedule_occurrences VALUES (?, ?, ?, ?)",
            (schedule.id, starts_at.astimezone(UTC).isoformat(), schedule.room_for(starts_at), time.time()),
        )
        return cursor.rowcount == 1

    def opened(self, schedule_id: str) -> list[dict[str, Any]]:
        rows = self._db.execute(
            "SELECT * FROM schedule_occurrences WHERE schedule_id = ? ORDER BY starts_at", (schedule_id,)
        ).fetchall()
        return [{"startsAt": row["starts_at"], "room": row["room_id"], "openedAt": row["opened_at"]} for row in rows]


def from_row(row: Mapping[str, Any] | sqlite3.Row) -> Schedule:
    """A schedule from its stored form (``to_row``, with ``deleted_at``)."""
    return Schedule(
        id=row["id"],
        title=row["title"],
        kind=row["kind"],
        weekday=row["weekday"],
        local_time=None if row["local_time"] is None else datetime.time.fromisoformat(row["local_time"]),
        at=None if row["at"] is None else datetime.datetime.fromisoformat(row["at"]),
        timezone=row["timezone"],
        duration_minutes=row["duration_minutes"],
        specialty=row["specialty"],
        accounts=tuple(json.loads(row["accounts"])),
        facilities=tuple(json.loads(row["facilities"])),
        created_by=row["created_by"],
        created_at=row["created_at"],
        deleted=row["deleted_at"] is not None,
    )
