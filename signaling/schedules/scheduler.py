"""The scheduler: opens each session at its time, once, tells its parties, and keeps its room to them.

"Opening" a session records the occurrence (``ScheduleRecords.claim``) under a room id of its own and sends
``scheduled-session`` with the room's link to every connected page of every party (``to_account``). Parties are the
listed accounts plus every account of a listed facility. A session that fell due while the server was down opens
late, as long as it has not ended (start + duration); after that it is skipped, never opened hours late.

Only parties and admins may join a scheduled room: ``admit`` runs before every join (rooms that are not
scheduled are untouched).
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import re
from typing import Any

from redis.exceptions import RedisError

from ..accounts import AccountStore
from ..auth import Identity
from ..config import SchedulerConfig
from ..events import RoomGate, SignalingError, SignalingEvents
from .store import Schedule, ScheduleRecords

__all__ = ["Scheduler"]

logger = logging.getLogger(__name__)

UTC = datetime.UTC
_ROOM = re.compile(r"^lich-([0-9a-f]{10})-\d{12}$")


class Scheduler(RoomGate):
    def __init__(
        self, store: ScheduleRecords, accounts: AccountStore, events: SignalingEvents, config: SchedulerConfig
    ) -> None:
        self.store = store
        self.accounts = accounts
        self.events = events
        self.config = config
        events.gates.append(self)

    async def run(self) -> None:
        """Tick until cancelled; a failing tick is logged and the next one tries again."""
        while True:
            try:
                await self.tick(datetime.datetime.now(UTC))
            except RedisError as exc:  # a cluster's schedules out of reach: sessions due open at a later tick
                logger.warning("scheduler tick skipped: Redis unreachable (%s)", exc)
            except Exception:
                logger.exception("scheduler tick failed")
            await asyncio.sleep(self.config.tick_seconds)

    async def tick(self, now: datetime.datetime) -> list[str]:
        """Open every session due at ``now`` that is not open yet; the rooms opened."""
        opened = []
        for schedule in self.store.active():
            starts_at = schedule.rule.latest_at_or_before(now)
            if starts_at is None or now >= starts_at + schedule.duration:
                continue
            if not self.store.claim(schedule, starts_at):
                continue
            room = schedule.room_for(starts_at)
            recipients = self.recipients(schedule)
            logger.info("scheduled session %s (%s) opened room %s; notifying %d accounts", schedule.id,
                        schedule.title, room, len(recipients))
            payload = self.session(schedule, starts_at, "open")
            for username in sorted(recipients):
                await self.events.to_account(username, "scheduled-session", payload)
            opened.append(room)
        return opened

    def recipients(self, schedule: Schedule) -> set[str]:
        """The listed accounts, and every account of a listed facility."""
        facilities = set(schedule.facilities)
        by_facility = {a.username for a in self.accounts.all() if a.facility_id in facilities}
        return set(schedule.accounts) | by_facility

    @staticmethod
    def is_party(schedule: Schedule, identity: Identity) -> bool:
        return (identity.user_id is not None and identity.user_id in schedule.accounts) or (
            identity.facility_id is not None and identity.facility_id in schedule.facilities
        )

    def admit(self, identity: Identity, room_id: str) -> None:
        match = _ROOM.match(room_id)
        try:
            schedule = self.store.get(match.group(1)) if match else None
        except RedisError as exc:  # a cluster's schedules: who may enter cannot be checked
            raise SignalingError("service-degraded", f"service degraded: Redis unreachable ({exc}); try again "
                                 "shortly") from None
        if schedule is None or identity.role == "admin" or self.is_party(schedule, identity):
            return
        if identity.is_guest:
            raise SignalingError("unauthorized", "this scheduled session is for its parties: sign in to join")
        raise SignalingError("forbidden", "this scheduled session is for its listed parties only")

    def upcoming(self, identity: Identity, now: datetime.datetime) -> list[dict[str, Any]]:
        """Sessions open now or starting within ``upcoming_days`` of which ``identity`` is a party (admins: all)."""
        horizon = now + datetime.timedelta(days=self.config.upcoming_days)
        sessions = []
        for schedule in self.store.active():
            if identity.role != "admin" and not self.is_party(schedule, identity):
                continue
            current = schedule.rule.latest_at_or_before(now)
            if current is not None and now < current + schedule.duration:
                sessions.append(self.session(schedule, current, "open"))
            start = schedule.rule.next_after(now)
            while start is not None and start <= horizon:
                sessions.append(self.session(schedule, start, "upcoming"))
                start = schedule.rule.next_after(start)
        return sorted(sessions, key=lambda s: s["startsAt"])

    @staticmethod
    def session(schedule: Schedule, starts_at: datetime.datetime, status: str) -> dict[str, Any]:
        room = schedule.room_for(starts_at)
        return {
            "scheduleId": schedule.id,
            "title": schedule.title,
            "specialty": schedule.specialty,
            "status": status,
            "startsAt": starts_at.astimezone(UTC).isoformat(),
            "endsAt": (starts_at + schedule.duration).astimezone(UTC).isoformat(),
            "room": room,
            "url": f"/room/{room}",
            "accounts": list(schedule.accounts),
            "facilities": list(schedule.facilities),
        }
