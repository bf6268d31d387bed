"""The consult log: every consult with its timestamps, parties and outcome, durable in the embedded store.

Time to answer is the number the programme is judged by, so it is recorded twice: wall-clock stamps (UTC, ms) say
*when*, and a monotonic duration measured in the dispatching process (``answer_ms``, and ``elapsed_ms`` on every
event) says *how long*, immune to clock steps (NTP) during a call. Each step of a consult is written as one
transaction as it happens (dispatch writes it right after telling the people concerned), so a restart loses
nothing; consults a restart cut short are closed as ``interrupted``.
"""

from __future__ import annotations

import datetime
import sqlite3
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from .store import transaction

__all__ = ["COLUMNS", "OUTCOMES", "ConsultLog", "ConsultRecords", "LogFilter", "Party", "Row", "stamp"]

Outcome = Literal["open", "answered", "cancelled", "unanswered", "interrupted"]
OUTCOMES: tuple[str, ...] = ("open", "answered", "cancelled", "unanswered", "interrupted")

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS consults (
        id TEXT PRIMARY KEY,
        caller TEXT NOT NULL,
        caller_name TEXT NOT NULL,
        caller_facility TEXT NOT NULL,
        caller_province TEXT NOT NULL,
        point TEXT,
        specialty TEXT NOT NULL,
        urgency TEXT NOT NULL,
        summary TEXT NOT NULL,
        target TEXT,
        requested_at TEXT NOT NULL,
        outcome TEXT NOT NULL,
        answered_by TEXT,
        answerer_name TEXT,
        answerer_facility TEXT,
        answered_at TEXT,
        answer_ms REAL,
        closed_at TEXT,
        room TEXT,
        joined_at TEXT,
        ended_at TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS consults_requested_at ON consults (requested_at)",
    """CREATE TABLE IF NOT EXISTS consult_events (
        seq INTEGER PRIMARY KEY,
        consult_id TEXT NOT NULL REFERENCES consults (id),
        at TEXT NOT NULL,
        elapsed_ms REAL NOT NULL,
        kind TEXT NOT NULL,
        username TEXT,
        facility TEXT,
        detail TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS consult_events_consult ON consult_events (consult_id)",
)


COLUMNS: tuple[str, ...] = (
    "id", "caller", "caller_name", "caller_facility", "caller_province", "point", "specialty", "urgency", "summary",
    "target", "requested_at", "outcome", "answered_by", "answerer_name", "answerer_facility", "answered_at",
    "answer_ms", "closed_at", "room", "joined_at", "ended_at",
)  # fmt: skip
"""A consult's row, as both backends give it (``answer_ms`` a float, the others text or None)."""
Row = Mapping[str, Any]


def stamp(at: datetime.datetime) -> str:
    """UTC, millisecond ISO 8601: sorts as text, reads as time."""
    return at.astimezone(datetime.UTC).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class Party:
    username: str
    name: str
    facility: str


@dataclass(frozen=True)
class LogFilter:
    """Which consults: requested in ``[start, end)`` (UTC), and any of the other fields that are set."""

    start: datetime.datetime | None = None
    end: datetime.datetime | None = None
    facility: str | None = None
    """The calling facility."""
    province: str | None = None
    specialty: str | None = None
    outcome: str | None = None
    party: str | None = None
    """A username that called, answered or was invited."""
    involving_facility: str | None = None
    """A facility that called or answered."""
    limit: int | None = None


class ConsultRecords(Protocol):
    """The consult log as dispatch and the API use it: the embedded ``ConsultLog`` (SQLite), or in a cluster
    ``cluster.consult_log.RedisConsultLog``, so every signaling process reads and writes one log."""

    def batch(self) -> AbstractContextManager[None]: ...
    def requested(self, consult_id: str, at: datetime.datetime, caller: Party, province: str, point: str | None,
                  specialty: str, urgency: str, summary: str, target: str | None) -> None: ...
    def event(self, consult_id: str, at: datetime.datetime, elapsed_ms: float | None, kind: str,
              party: Party | None = None, detail: str | None = None) -> None: ...
    def answered(self, consult_id: str, at: datetime.datetime, answer_ms: float, by: Party, room: str) -> None: ...
    def closed(self, consult_id: str, at: datetime.datetime, elapsed_ms: float,
               outcome: Literal["cancelled", "unanswered"]) -> None: ...
    def mark(self, consult_id: str, column: Literal["joined_at", "ended_at"], at: datetime.datetime) -> bool: ...
    def parties(self, consult_id: str) -> dict[str, str] | None: ...
    def get(self, consult_id: str) -> dict[str, Any] | None: ...
    def rows(self, where: LogFilter) -> list[Row]: ...
    def ring_counts(self, consult_ids: list[str]) -> dict[str, int]: ...


class ConsultLog:
    def __init__(self, db: sqlite3.Connection, now: datetime.datetime) -> None:
        """Create the tables if needed and close, as ``interrupted``, consults a previous process left open."""
        self._db = db
        for statement in _SCHEMA:
            db.execute(statement)
        open_ids = [row[0] for row in db.execute("SELECT id FROM consults WHERE outcome = 'open'")]
        with self.batch():
            for consult_id in open_ids:
                db.execute("UPDATE consults SET outcome = 'interrupted', closed_at = ? WHERE id = ?",
                           (stamp(now), consult_id))
                self._event(consult_id, now, None, "interrupted")

    # -- writing ------------------------------------------------------------------------------------------

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Writes inside are one transaction (one disk sync): a request and its first rings, an answer and the
        rings it stops. Nested batches join the outer one."""
        if self._db.in_transaction:
            yield
            return
        with transaction(self._db):
            yield

    def requested(
        self,
        consult_id: str,
        at: datetime.datetime,
        caller: Party,
        province: str,
        point: str | None,
        specialty: str,
        urgency: str,
        summary: str,
        target: str | None,
    ) -> None:
        with self.batch():
            self._db.execute(
                "INSERT INTO consults (id, caller, caller_name, caller_facility, caller_province, point, specialty, "
                "urgency, summary, target, requested_at, outcome) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'open')",
                (consult_id, caller.username, caller.name, caller.facility, province, point, specialty, urgency,
                 summary, target, stamp(at)),
            )  # fmt: skip
            self._event(consult_id, at, 0.0, "requested", caller.username, caller.facility)

    def event(
        self,
        consult_id: str,
        at: datetime.datetime,
        elapsed_ms: float | None,
        kind: str,
        party: Party | None = None,
        detail: str | None = None,
    ) -> None:
        """One step of a consult (ring, declined, invited, joined, left, ...), at ``elapsed_ms`` since the request."""
        with self.batch():
            self._event(
                consult_id, at, elapsed_ms, kind, party and party.username, party and party.facility, detail
            )

    def answered(
        self, consult_id: str, at: datetime.datetime, answer_ms: float, by: Party, room: str
    ) -> None:
        with self.batch():
            self._db.execute(
                "UPDATE consults SET outcome = 'answered', answered_by = ?, answerer_name = ?, answerer_facility = ?, "
                "answered_at = ?, answer_ms = ?, closed_at = ?, room = ? WHERE id = ?",
                (by.username, by.name, by.facility, stamp(at), answer_ms, stamp(at), room, consult_id),
            )
            self._event(consult_id, at, answer_ms, "accepted", by.username, by.facility)

    def closed(
        self, consult_id: str, at: datetime.datetime, elapsed_ms: float, outcome: Literal["cancelled", "unanswered"]
    ) -> None:
        with self.batch():
            self._db.execute("UPDATE consults SET outcome = ?, closed_at = ? WHERE id = ?",
                             (outcome, stamp(at), consult_id))
            self._event(consult_id, at, elapsed_ms, outcome)

    def mark(self, consult_id: str, column: Literal["joined_at", "ended_at"], at: datetime.datetime) -> bool:
        """Set ``joined_at`` (both parties in the room) or ``ended_at`` (room emptied) once; True if it was unset."""
        cursor = self._db.execute(
            f"UPDATE consults SET {column} = ? WHERE id = ? AND {column} IS NULL", (stamp(at), consult_id)
        )
        return cursor.rowcount == 1

    def _event(
        self,
        consult_id: str,
        at: datetime.datetime,
        elapsed_ms: float | None,
        kind: str,
        username: str | None = None,
        facility: str | None = None,
        detail: str | None = None,
    ) -> None:
        if elapsed_ms is None:  # no monotonic reading (a restart came between): from the wall clocks
            row = self._db.execute("SELECT requested_at FROM consults WHERE id = ?", (consult_id,)).fetchone()
            elapsed_ms = (at - datetime.datetime.fromisoformat(row[0])).total_seconds() * 1000 if row else 0.0
        self._db.execute(
            "INSERT INTO consult_events (consult_id, at, elapsed_ms, kind, username, facility, detail) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (consult_id, stamp(at), elapsed_ms, kind, username, facility, detail),
        )

    # -- reading ------------------------------------------------------------------------------------------

    def parties(self, consult_id: str) -> dict[str, str] | None:
        """Who may be in the consult's room: username → ``caller``, ``answerer`` or ``invited``; None if unknown."""
        if self._db.execute("SELECT 1 FROM consults WHERE id = ?", (consult_id,)).fetchone() is None:
            return None
        roles = {"requested": "caller", "accepted": "answerer", "invited": "invited"}
        out: dict[str, str] = {}
        for row in self._db.execute(
            "SELECT kind, username FROM consult_events WHERE consult_id = ? AND kind IN "
            "('requested', 'accepted', 'invited') ORDER BY seq",
            (consult_id,),
        ):
            out.setdefault(row["username"], roles[row["kind"]])
        return out

    def get(self, consult_id: str) -> dict[str, Any] | None:
        row = self._db.execute("SELECT * FROM consults WHERE id = ?", (consult_id,)).fetchone()
        if row is None:
            return None
        out = public_row(row)
        out["events"] = [
            public_event(event)
            for event in self._db.execute(
                "SELECT * FROM consult_events WHERE consult_id = ? ORDER BY seq", (consult_id,)
            )
        ]
        return out

    def rows(self, where: LogFilter) -> list[Row]:
        """Consults matching ``where``, newest first."""
        clauses, params = _clauses(where)
        sql = "SELECT * FROM consults" + (" WHERE " + " AND ".join(clauses) if clauses else "")
        sql += " ORDER BY requested_at DESC, id"
        if where.limit is not None:
            sql += f" LIMIT {int(where.limit)}"
        return list(self._db.execute(sql, params))

    def ring_counts(self, consult_ids: list[str]) -> dict[str, int]:
        if not consult_ids:
            return {}
        marks = ",".join("?" * len(consult_ids))
        return {
            row[0]: row[1]
            for row in self._db.execute(
                f"SELECT consult_id, COUNT(*) FROM consult_events WHERE kind = 'ring' AND consult_id IN ({marks}) "
                "GROUP BY consult_id",
                consult_ids,
            )
        }


def _clauses(where: LogFilter) -> tuple[list[str], list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    if where.start is not None:
        clauses.append("requested_at >= ?")
        params.append(stamp(where.start))
    if where.end is not None:
        clauses.append("requested_at < ?")
        params.append(stamp(where.end))
    for column, value in (
        ("caller_facility", where.facility),
        ("caller_province", where.province),
        ("specialty", where.specialty),
        ("outcome", where.outcome),
    ):
        if value is not None:
            clauses.append(f"{column} = ?")
            params.append(value)
    if where.party is not None:
        clauses.append(
            "(caller = ? OR answered_by = ? OR id IN (SELECT consult_id FROM consult_events "
            "WHERE kind = 'invited' AND username = ?))"
        )
        params += [where.party] * 3
    if where.involving_facility is not None:
        clauses.append("(caller_facility = ? OR answerer_facility = ?)")
        params += [where.involving_facility] * 2
    return clauses, params


def public_event(event: Row) -> dict[str, Any]:
    """One step of a consult as the API shows it."""
    return {
        "at": event["at"],
        "elapsedMs": round(event["elapsed_ms"], 3),
        "kind": event["kind"],
        "username": event["username"],
        "facility": event["facility"],
        "detail": event["detail"],
    }


def public_row(row: Row) -> dict[str, Any]:
    """A consult as the API shows it (camelCase, seconds)."""
    answered = row["answered_by"] is not None
    return {
        "id": row["id"],
        "caller": {"username": row["caller"], "name": row["caller_name"], "facility": row["caller_facility"]},
        "province": row["caller_province"],
        "point": row["point"],
        "specialty": row["specialty"],
        "urgency": row["urgency"],
        "summary": row["summary"],
        "target": row["target"],
        "requestedAt": row["requested_at"],
        "outcome": row["outcome"],
        "answeredBy": {"username": row["answered_by"], "name": row["answerer_name"],
                       "facility": row["answerer_facility"]} if answered else None,
        "answeredAt": row["answered_at"],
        "answerSeconds": round(row["answer_ms"] / 1000, 3) if row["answer_ms"] is not None else None,
        "closedAt": row["closed_at"],
        "room": row["room"],
        "joinedAt": row["joined_at"],
        "endedAt": row["ended_at"],
    }  # fmt: skip


def iter_csv_rows(log: ConsultRecords, where: LogFilter) -> Iterator[list[str]]:
    """Header and one row per consult, for the CSV export (the case summary is left out: it is patient data)."""
    yield [
        "id", "requested_at", "caller", "caller_name", "caller_facility", "province", "point", "specialty",
        "urgency", "target", "outcome", "answered_by", "answerer_name", "answerer_facility", "answered_at",
        "answer_seconds", "rings", "closed_at", "joined_at", "ended_at",
    ]  # fmt: skip
    rows = log.rows(where)
    rings = log.ring_counts([row["id"] for row in rows])
    for row in rows:
        answer = f"{row['answer_ms'] / 1000:.3f}" if row["answer_ms"] is not None else ""
        yield [
            row["id"], row["requested_at"], row["caller"], row["caller_name"], row["caller_facility"],
            row["caller_province"], row["point"] or "", row["specialty"], row["urgency"], row["target"] or "",
            row["outcome"], row["answered_by"] or "", row["answerer_name"] or "", row["answerer_facility"] or "",
            row["answered_at"] or "", answer, str(rings.get(row["id"], 0)), row["closed_at"] or "",
            row["joined_at"] or "", row["ended_at"] or "",
        ]  # fmt: skip
