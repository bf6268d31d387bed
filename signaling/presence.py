"""Who is in the lobby: which accounts and connection points are online, and which central doctors are on duty.

A doctor can be rung only while on duty *and* online (at least one lobby page open). On duty is the doctor's own
choice and is kept in the embedded store, so a page reload or a server restart does not silently take a doctor off
the rota; online is which sockets are open now, in memory.
"""

from __future__ import annotations

import datetime
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass

from .auth import Identity

__all__ = ["Presence", "Seat"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS duty (
    username TEXT PRIMARY KEY,
    on_duty INTEGER NOT NULL,
    changed_at TEXT NOT NULL
)
"""


@dataclass(frozen=True)
class Seat:
    """One lobby connection: whose, and at which connection point (None: a doctor's own device)."""

    identity: Identity
    point: str | None


class Presence:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        db.execute(_SCHEMA)
        self.on_duty: set[str] = {row[0] for row in db.execute("SELECT username FROM duty WHERE on_duty = 1")}
        self.seats: dict[str, Seat] = {}
        self._by_user: dict[str, set[str]] = {}
        self._by_point: dict[str, set[str]] = {}
        self._identities: dict[str, Identity] = {}  # the latest identity of each online account

    def enter(self, sid: str, identity: Identity, point: str | None) -> bool:
        """Register a lobby connection; True if its account was offline until now."""
        self.leave(sid)
        username = identity.user_id or ""
        self.seats[sid] = Seat(identity, point)
        first = username not in self._by_user
        self._by_user.setdefault(username, set()).add(sid)
        self._identities[username] = identity
        if point is not None:
            self._by_point.setdefault(point, set()).add(sid)
        return first

    def leave(self, sid: str) -> bool:
        """Forget a connection; True if that was its account's last one (the account is now offline)."""
        seat = self.seats.pop(sid, None)
        if seat is None:
            return False
        username = seat.identity.user_id or ""
        sids = self._by_user.get(username, set())
        sids.discard(sid)
        gone = not sids
        if gone:
            self._by_user.pop(username, None)
            self._identities.pop(username, None)
        if seat.point is not None:
            points = self._by_point.get(seat.point, set())
            points.discard(sid)
            if not points:
                self._by_point.pop(seat.point, None)
        return gone

    def set_duty(self, username: str, on: bool, now: datetime.datetime) -> None:
        self._db.execute(
            "INSERT INTO duty VALUES (?, ?, ?) ON CONFLICT (username) DO UPDATE SET on_duty = excluded.on_duty, "
            "changed_at = excluded.changed_at",
            (username, int(on), now.isoformat(timespec="milliseconds")),
        )
        (self.on_duty.add if on else self.on_duty.discard)(username)

    def online(self, username: str) -> bool:
        return username in self._by_user

    def known(self) -> dict[str, Identity]:
        """Accounts online, with their latest identity (a cluster: on every process, as of the last ``sync``)."""
        return self._identities

    async def sync(self) -> None:
        """Share this process's presence and learn the others' (a cluster: ``cluster/presence.py``)."""

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    def ringable(self, facilities: Iterable[str], specialty: str) -> list[Identity]:
        """On-duty, online doctors of these facilities who answer for ``specialty``."""
        wanted = set(facilities)
        return [
            identity
            for username in self.on_duty
            if (identity := self.known().get(username)) is not None
            and identity.facility_id in wanted
            and specialty in identity.specialties
        ]

    def points_online(self) -> list[str]:
        return sorted(self._by_point)

    def doctors(self) -> list[dict[str, object]]:
        """Doctors online now, with whether they are on duty."""
        return [
            {
                "username": username,
                "displayName": identity.display_name,
                "facility": identity.facility_id,
                "specialties": list(identity.specialties),
                "onDuty": username in self.on_duty,
            }
            for username, identity in sorted(self.known().items())
            if identity.role == "doctor"
        ]
