"""socket.io events of the lobby: presence, duty, and a consult's life from request to the consult room.

Each event admits only the roles that can use it (``_route(..., roles=...)``) and the dispatcher checks the rest
(only the caller cancels, only a rung doctor accepts or declines, only the answering doctor invites). Consult rooms
are gated here too: ``admit`` lets in only the consult's caller, answerer and invited experts.

Everyone in the lobby gets ``presence``: how many on-duty central doctors are online for each specialty, sent when
an on-duty doctor comes, goes or changes duty (changes within a second go out together), so a district doctor sees
whom a call could reach. It is small and rare on purpose: with the whole national network (1,500 connection
points) in the lobby, every byte of it goes out 1,500 times, and points coming and going do not trigger it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from redis.exceptions import RedisError

from .accounts import ROLES
from .auth import Identity
from .directory import Directory
from .dispatch import DispatchError, Dispatcher
from .presence import Presence
from .events import RoomGate, SignalingError, SignalingEvents
from . import schemas

__all__ = ["LOBBY_ROOM", "LobbyEvents"]

logger = logging.getLogger(__name__)

LOBBY_ROOM = "lobby"
_PRESENCE_INTERVAL = 1.0
_ACCOUNTS = frozenset(ROLES)
_DOCTORS = frozenset({"doctor"})


class LobbyEvents(RoomGate):
    def __init__(self, events: SignalingEvents, dispatcher: Dispatcher, directory: Callable[[], Directory]) -> None:
        self._events = events
        self.dispatcher = dispatcher
        self._directory = directory
        self._summary_task: asyncio.Task[None] | None = None
        self._dirty = False
        route = events._route  # noqa: SLF001 - the one way every event gets its role check and schema
        route("lobby-enter", schemas.LobbyEnter, self.on_enter, roles=_ACCOUNTS, needs_participant=False)
        route("duty", schemas.Duty, self.on_duty, roles=_DOCTORS, needs_participant=False)
        route("consult-request", schemas.ConsultRequest, self.on_request, roles=_DOCTORS, needs_participant=False)
        route("consult-cancel", schemas.ConsultRef, self.on_cancel, roles=_DOCTORS, needs_participant=False)
        route("consult-accept", schemas.ConsultRef, self.on_accept, roles=_DOCTORS, needs_participant=False)
        route("consult-decline", schemas.ConsultRef, self.on_decline, roles=_DOCTORS, needs_participant=False)
        route("consult-invite", schemas.ConsultInvite, self.on_invite, roles=_DOCTORS, needs_participant=False)
        events.gates.append(self)
        events.disconnect_hooks.append(self.on_disconnect)

    def _identity(self, sid: str) -> Identity:
        identity = self._events.identity(sid)
        if identity is None:  # dispatch checked it; a disconnect in between
            raise SignalingError("unauthorized", "this connection is not signed in")
        return identity

    # -- presence -------------------------------------------------------------------------------------------

    async def on_enter(self, sid: str, message: schemas.LobbyEnter) -> dict[str, Any]:
        identity = self._identity(sid)
        if message.point is not None:
            point = self._directory().point(message.point)
            if point is None:
                raise SignalingError("unknown-point", f"connection point {message.point!r} is not in the directory")
            if identity.role != "admin" and point.facility != identity.facility_id:
                raise SignalingError("forbidden", f"connection point {point.id} belongs to another facility")
        presence = self.dispatcher.presence
        presence.enter(sid, identity, message.point)
        await self._share(presence)
        await self._events.sio.enter_room(sid, LOBBY_ROOM)
        username = identity.user_id or ""
        if identity.role == "doctor" and username in presence.on_duty:
            await self.dispatcher.reachable(identity)
            self._presence_changed()
        return {
            "ok": True,
            "onDuty": username in presence.on_duty,
            "consults": self.dispatcher.active_for(username),
            "presence": self.summary(),
        }

    async def on_disconnect(self, sid: str) -> None:
        presence = self.dispatcher.presence
        seat = presence.seats.get(sid)
        if presence.leave(sid) and seat is not None:
            await self._share(presence)
            if seat.identity.user_id in presence.on_duty:
                self._presence_changed()

    @staticmethod
    async def _share(presence: Presence) -> None:
        """A cluster: other processes learn at once who came or went (else on the next periodic sync)."""
        try:
            await presence.sync()
        except (RedisError, OSError) as exc:
            logger.error("lobby presence not shared: Redis unreachable (%s)", exc)

    def summary(self) -> dict[str, int]:
        """On-duty central doctors online, per specialty."""
        counts: dict[str, int] = {}
        presence = self.dispatcher.presence
        for doctor in presence.doctors():
            if doctor["onDuty"]:
                for code in doctor["specialties"]:  # type: ignore[attr-defined]
                    counts[code] = counts.get(code, 0) + 1
        return dict(sorted(counts.items()))

    def _presence_changed(self) -> None:
        self._dirty = True
        if self._summary_task is None or self._summary_task.done():
            self._summary_task = asyncio.ensure_future(self._push_summary())

    async def _push_summary(self) -> None:
        while self._dirty:
            self._dirty = False
            await asyncio.sleep(_PRESENCE_INTERVAL)  # changes within a second go out together
            await self._events.sio.emit("presence", {"onDuty": self.summary()}, to=LOBBY_ROOM)

    # -- duty and consults ----------------------------------------------------------------------------------

    async def on_duty(self, sid: str, message: schemas.Duty) -> dict[str, Any]:
        identity = self._identity(sid)
        await _dispatching(self.dispatcher.set_duty(identity, message.onDuty))
        await self._events.to_account(identity.user_id or "", "duty", {"onDuty": message.onDuty})
        self._presence_changed()
        return {"ok": True, "onDuty": message.onDuty}

    async def on_request(self, sid: str, message: schemas.ConsultRequest) -> dict[str, Any]:
        consult = await _dispatching(self.dispatcher.request(
            self._identity(sid), message.specialty, message.urgency, message.summary, message.target, message.point
        ))  # fmt: skip
        return {"ok": True, "consult": consult}

    async def on_cancel(self, sid: str, message: schemas.ConsultRef) -> dict[str, Any]:
        return {"ok": True, "consult": await _dispatching(self.dispatcher.cancel(self._identity(sid), message.consult))}

    async def on_accept(self, sid: str, message: schemas.ConsultRef) -> dict[str, Any]:
        return {"ok": True, "consult": await _dispatching(self.dispatcher.accept(self._identity(sid), message.consult))}

    async def on_decline(self, sid: str, message: schemas.ConsultRef) -> dict[str, Any]:
        consult = await _dispatching(self.dispatcher.decline(self._identity(sid), message.consult))
        return {"ok": True, "consult": consult}

    async def on_invite(self, sid: str, message: schemas.ConsultInvite) -> dict[str, Any]:
        consult = await _dispatching(self.dispatcher.invite(self._identity(sid), message.consult, message.username))
        return {"ok": True, "consult": consult}

    # -- consult rooms (RoomGate) ---------------------------------------------------------------------------

    def admit(self, identity: Identity, room_id: str) -> None:
        try:
            self.dispatcher.admit(identity, room_id)
        except DispatchError as exc:
            raise SignalingError(exc.code, exc.message) from None
        except RedisError as exc:  # a cluster's consult log: who may enter cannot be checked
            raise SignalingError("service-degraded", f"service degraded: Redis unreachable ({exc}); try again "
                                 "shortly") from None

    def joined(self, room_id: str, identity: Identity, members: list[Identity]) -> None:
        try:
            self.dispatcher.joined(room_id, identity, members)
        except RedisError as exc:  # the join stands; only its line in a cluster's consult log is missing
            logger.warning("consult room %s: join of %s not logged (%s)", room_id, identity.user_id, exc)

    def left(self, room_id: str, identity: Identity, members: list[Identity]) -> None:
        try:
            self.dispatcher.left(room_id, identity, members)
        except RedisError as exc:  # the leave goes ahead; only its line in a cluster's consult log is missing
            logger.warning("consult room %s: leave of %s not logged (%s)", room_id, identity.user_id, exc)


async def _dispatching(call: Any) -> Any:
    """Await a dispatcher call, turning its refusals into the socket.io ``error`` every event answers with."""
    try:
        return await call
    except DispatchError as exc:
        raise SignalingError(exc.code, exc.message) from None
    except (RedisError, OSError) as exc:  # a cluster's Redis: no new call can be placed or answered safely
        raise SignalingError("service-degraded", f"service degraded: Redis unreachable ({exc}); try again "
                             "shortly") from None
