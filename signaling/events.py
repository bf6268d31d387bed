"""socket.io event handlers: check who may do what, validate, then call rooms and media.

A connection is authenticated once, when it opens (``auth.py``); every event declares the roles it admits
(``_route(..., roles=...)``, no default, so a new event cannot forget) and is refused with ``unauthorized`` or
``forbidden`` before its payload is even read. Every inbound event is then validated against its schema before
anything changes; a bad one gets an ``error`` event back and changes nothing. Events of one socket are handled in order (an answer before the candidates
that follow it), events of different sockets concurrently.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import socketio
from pydantic import ValidationError

from redis.exceptions import RedisError

from media.errors import MediaError
from media.service import MediaService

from . import schemas
from .auth import PARTICIPANT_ROLES, Authenticator, AuthError, Identity
from .recording import Policy, RecordingControl
from .rooms import Participant, RoomRegistry
from .roster import LocalRoster, Member, Roster

logger = logging.getLogger(__name__)

M = TypeVar("M", bound=schemas.Message)


def account_room(user_id: str) -> str:
    """The socket.io room holding every connection of one account."""
    return f"account:{user_id}"


def room_channel(room_id: str) -> str:
    """The socket.io room holding the connections of one Hoichan room's participants, on every process."""
    return f"room:{room_id}"


class RoomGate:
    """Who may enter a room, and who is told when people come and go: consult rooms (``lobby_events.py``),
    scheduled sessions (``schedules/scheduler.py``), the record of who attended (``sharing/service.py``).
    Each does nothing unless overridden."""

    def admit(self, identity: Identity, room_id: str) -> None:
        """Raise ``SignalingError`` to refuse ``identity`` entry to ``room_id``; runs before anything changes."""

    def joined(self, room_id: str, identity: Identity, members: list[Identity]) -> None:
        """``identity`` is now in ``room_id`` (a new participant, not a resumed one), with ``members``."""

    def left(self, room_id: str, identity: Identity, members: list[Identity]) -> None:
        """``identity`` has gone from ``room_id``; ``members`` remain."""


class SignalingError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _describe(error: ValidationError) -> str:
    parts = []
    for item in error.errors()[:3]:
        where = ".".join(str(p) for p in item["loc"]) or "payload"
        parts.append(f"{where}: {item['msg']}")
    return "; ".join(parts)


class SignalingEvents:
    def __init__(
        self,
        sio: socketio.AsyncServer,
        media: MediaService,
        authenticator: Authenticator,
        ice_servers: list[dict[str, Any]],
        max_message_bytes: int,
        room_max_participants: int,
        reconnect_grace_seconds: float,
        recording_policy: Policy = "never",
        roster: Callable[[RoomRegistry], Roster] = LocalRoster,
    ) -> None:
        """``roster``: who is in each room across processes, given this process's registry (default: only it)."""
        self.sio = sio
        self.media = media
        self.registry = RoomRegistry()
        self.roster = roster(self.registry)
        self._authenticator = authenticator
        self._ice_servers = ice_servers
        self._max_message_bytes = max_message_bytes
        self._room_max = room_max_participants
        self._grace = reconnect_grace_seconds
        self.recording = RecordingControl(recording_policy, media, self._to_room)
        self._identities: dict[str, Identity] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._expiry: dict[str, asyncio.TimerHandle] = {}
        self.link_listeners: list[Callable[[Participant, dict[str, Any]], None]] = []
        """Called with every ``link-quality`` sample media reports about a participant."""
        self.room_closed_listeners: list[Callable[[str], None]] = []
        """Called with a room's id when its last participant has gone."""
        self.gates: list[RoomGate] = []
        self.facility_name: Callable[[str], str | None] = lambda facility_id: None
        """A facility id's name in the directory (None: unknown), shown on participants' tiles."""
        self.disconnect_hooks: list[Callable[[str], Awaitable[None]]] = []
        self.point_facility: Callable[[str], str | None] = lambda point_id: None
        """The facility of a connection point in the directory (None: no such point)."""
        self.limits_of: Callable[[Participant], dict[str, Any]] = lambda participant: {}
        """The limits in force for a participant (``caps/service.py``), handed to media at its join."""
        sio.on("connect", self.on_connect)
        sio.on("disconnect", self.on_disconnect)
        # Taking part in a room is open to every role, guests included (they exist only while allowed).
        self._route("join", schemas.Join, self.on_join, roles=PARTICIPANT_ROLES, needs_participant=False)
        self._route("answer", schemas.Sdp, self.on_answer, roles=PARTICIPANT_ROLES)
        self._route("offer", schemas.Sdp, self.on_offer, roles=PARTICIPANT_ROLES)
        self._route("candidate", schemas.Candidate, self.on_candidate, roles=PARTICIPANT_ROLES)
        self._route("media-state", schemas.MediaState, self.on_media_state, roles=PARTICIPANT_ROLES)
        self._route("restart-media", schemas.Empty, self.on_restart_media, roles=PARTICIPANT_ROLES)
        self._route("leave", schemas.Empty, self.on_leave, roles=PARTICIPANT_ROLES)
        sio.on("*", self.on_unknown)

    # -- plumbing ---------------------------------------------------------------------------------------

    def _route(
        self,
        event: str,
        schema: type[M],
        handler: Callable[..., Awaitable[Any]],
        *,
        roles: frozenset[str],
        needs_participant: bool = True,
    ) -> None:
        """Register ``handler`` for ``event``: only connections whose role is in ``roles`` reach it."""

        async def dispatch(sid: str, data: Any = None) -> Any:
            lock = self._locks.setdefault(sid, asyncio.Lock())
            async with lock:
                try:
                    identity = self._identities.get(sid)
                    if identity is None:
                        raise SignalingError("unauthorized", "this connection is not signed in")
                    if identity.role not in roles:
                        raise SignalingError("forbidden", f"{event} is not allowed for the role {identity.role}")
                    message = self._parse(schema, data)
                    if needs_participant:
                        participant = self.registry.by_sid.get(sid)
                        if participant is None:
                            raise SignalingError("not-joined", "join a room first")
                        return await handler(sid, participant, message)
                    return await handler(sid, message)
                except (SignalingError, MediaError) as exc:
                    return await self._fail(sid, event, exc.code, exc.message)
                except Exception:
                    logger.exception("event %s from %s failed", event, sid)
                    return await self._fail(sid, event, "internal", "the server could not handle this message")

        self.sio.on(event, dispatch)

    def add_event(
        self,
        event: str,
        schema: type[M],
        handler: Callable[..., Awaitable[Any]],
        *,
        roles: frozenset[str],
        needs_participant: bool = True,
    ) -> None:
        """For other modules (sharing, schedules): an event under the same role, schema and ordering rules."""
        self._route(event, schema, handler, roles=roles, needs_participant=needs_participant)

    def _parse(self, schema: type[M], data: Any) -> M:
        if data is None:
            data = {}
        try:
            size = len(json.dumps(data))
        except (TypeError, ValueError):
            raise SignalingError("invalid-payload", "payload is not JSON") from None
        if size > self._max_message_bytes:
            raise SignalingError(
                "payload-too-large", f"payload is {size} bytes; the limit is {self._max_message_bytes}"
            )
        if not isinstance(data, dict):
            raise SignalingError("invalid-payload", "payload must be a JSON object")
        try:
            return schema.model_validate(data)
        except ValidationError as exc:
            raise SignalingError("invalid-payload", _describe(exc)) from None

    async def _fail(self, sid: str, event: str, code: str, message: str) -> dict[str, Any]:
        error = {"code": code, "message": message, "event": event}
        await self.to_local(sid, "error", error)
        return {"ok": False, "error": error}

    async def notify(self, participant_id: str, event: str, payload: dict[str, Any]) -> None:
        """Media's way to reach a participant (offers, connection failures), or its room (``link-quality``)."""
        participant = self.registry.get(participant_id)
        if participant is None:
            return
        if event == "offer":
            participant.pending_offer = payload
        elif event == "recording-state":
            self.recording.media_reported(participant.room_id, payload)
        elif event == "link-quality":  # about this participant, for everyone in its room
            for link_listener in self.link_listeners:
                link_listener(participant, payload)
            await self._to_room(participant.room_id, event, payload)
            return
        if participant.sid is not None:
            await self.to_local(participant.sid, event, payload)

    async def to_local(self, sid: str, event: str, payload: dict[str, Any]) -> None:
        """Send to one connection of this process, straight to its socket (with Redis down too)."""
        await self.sio.emit(event, payload, to=sid, ignore_queue=True)

    async def to_room(
        self, room_id: str, event: str, payload: dict[str, Any], exclude: Participant | None = None
    ) -> None:
        """Send ``event`` to every connected participant of ``room_id`` (but ``exclude``), on every process."""
        skip = exclude.sid if exclude is not None else None
        await self.sio.emit(event, payload, to=room_channel(room_id), skip_sid=skip)

    async def _to_room(self, room_id: str, event: str, payload: dict[str, Any]) -> None:
        await self.to_room(room_id, event, payload)

    async def _broadcast(self, participant: Participant, event: str, payload: dict[str, Any]) -> None:
        await self.to_room(participant.room_id, event, payload, exclude=participant)

    async def start(self) -> None:
        await self.roster.start(self.registry.all, self._lapsed)

    async def close(self) -> None:
        await self.roster.close()

    # -- connection lifecycle -----------------------------------------------------------------------------

    async def on_connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> bool:
        """Refused connections get ``connect_error`` with ``data = {code, message}`` (code ``unauthorized``)."""
        try:
            identity = self._authenticator.authenticate(environ, auth)
        except AuthError as exc:
            raise socketio.exceptions.ConnectionRefusedError(exc.message, {"code": exc.code, "message": exc.message})
        self._identities[sid] = identity
        if identity.user_id is not None:  # lobby notices (rings, scheduled sessions) reach every tab of the account
            await self.sio.enter_room(sid, account_room(identity.user_id))
        return True

    async def to_account(self, user_id: str, event: str, payload: dict[str, Any]) -> None:
        """Send ``event`` to every connection signed in as ``user_id`` (none connected: nothing happens)."""
        await self.sio.emit(event, payload, to=account_room(user_id))

    def identity(self, sid: str) -> Identity | None:
        """Who this connection signed in as (None once it has closed)."""
        return self._identities.get(sid)

    async def on_disconnect(self, sid: str, reason: Any = None) -> None:
        for hook in self.disconnect_hooks:
            await hook(sid)
        self._identities.pop(sid, None)
        self._locks.pop(sid, None)
        participant = self.registry.detach(sid)
        if participant is None:
            return
        loop = asyncio.get_running_loop()
        self._expiry[participant.id] = loop.call_later(
            self._grace, lambda: asyncio.ensure_future(self._expire(participant))
        )

    async def _expire(self, participant: Participant) -> None:
        self._expiry.pop(participant.id, None)
        if participant.sid is None and self.registry.get(participant.id) is participant:
            logger.info("participant %s did not come back; removing", participant.id)
            await self._remove(participant)

    async def _remove(self, participant: Participant) -> None:
        self.registry.remove(participant)
        if participant.sid is not None:
            await self.sio.leave_room(participant.sid, room_channel(participant.room_id))
        timer = self._expiry.pop(participant.id, None)
        if timer is not None:
            timer.cancel()
        try:
            if not await self.roster.remove(participant):
                return  # it resumed through another process, which speaks for it (and its media) now
            remaining = await self.roster.members(participant.room_id)
        except RedisError as exc:  # its seat's lease runs out by itself; the others are told then
            logger.error("participant %s left room %s; Redis unreachable (%s)", participant.id, participant.room_id,
                         exc, extra={"room_id": participant.room_id, "participant_id": participant.id})
            remaining = [Member(p.public(), p.identity) for p in self.registry.members(participant.room_id)]
        await self._gone(participant.room_id, Member(participant.public(), participant.identity), remaining)
        if not self.registry.members(participant.room_id):
            self.recording.closed(participant.room_id)
            for closed_listener in self.room_closed_listeners:
                closed_listener(participant.room_id)
        await self.media.leave(participant.id)

    async def _gone(self, room_id: str, member: Member, remaining: list[Member]) -> None:
        """Tell the room and the gates that ``member`` has left ``room_id``."""
        for gate in self.gates:
            gate.left(room_id, member.identity, [m.identity for m in remaining])
        await self.to_room(room_id, "peer-left", {"id": member.public["id"]})

    async def _lapsed(self, room_id: str, member: Member) -> None:
        """A member whose signaling process died did not resume anywhere in time."""
        logger.info("participant %s did not come back after its signaling process stopped; removing",
                    member.public["id"], extra={"room_id": room_id, "participant_id": member.public["id"]})
        await self._gone(room_id, member, await self.roster.members(room_id))

    # -- events -------------------------------------------------------------------------------------------

    async def on_join(self, sid: str, message: schemas.Join) -> dict[str, Any]:
        if sid in self.registry.by_sid:
            raise SignalingError("invalid-payload", "this connection has already joined a room")
        identity = self._identities[sid]  # dispatch checked it
        if message.resume is not None:
            return await self._resume(sid, identity, message)
        if identity.is_guest:
            if message.name is None:
                raise SignalingError("invalid-payload", "name: required when joining without signing in")
            name, facility = message.name, message.facility
        else:  # a signed-in participant is who the account says, whatever the message claims
            name, facility = identity.display_name or identity.user_id or "", identity.facility_id or ""
        if message.point is not None:
            if identity.is_guest:
                raise SignalingError("forbidden", "only signed-in staff join from a connection point")
            point_facility = self.point_facility(message.point)
            if point_facility is None:
                raise SignalingError("invalid-payload", f"point: no connection point {message.point!r}")
            if point_facility != identity.facility_id:
                raise SignalingError("forbidden", f"connection point {message.point} is not at your facility")
        for gate in self.gates:
            gate.admit(identity, message.room)
        await self.media.prepare(message.room)  # cluster: no Redis or no media node → service-degraded, at once
        participant = self.registry.new(message.room, name, facility, identity)
        participant.point = message.point
        participant.limits = self.limits_of(participant)
        if not identity.is_guest:  # a guest's facility is what they typed
            participant.facility_name = self.facility_name(facility) or ""
        try:
            admitted = await self.roster.add(participant, self._room_max)
            members = await self.roster.members(message.room) if admitted else []
        except RedisError as exc:
            raise SignalingError("service-degraded", f"service degraded: Redis unreachable ({exc})") from None
        if not admitted:
            raise SignalingError("room-full", f"room {message.room} already has {self._room_max} participants")
        if not self.registry.members(message.room):
            # a recording is part of the medical record: only signed-in staff may ask for one
            self.recording.opened(message.room, message.record if not identity.is_guest else None)
        self.registry.add(participant, sid)
        await self.sio.enter_room(sid, room_channel(message.room))
        if not any(m.public["id"] == participant.id for m in members):
            members.append(Member(participant.public(), identity))
        for gate in self.gates:
            gate.joined(message.room, identity, [m.identity for m in members])
        peers = [m.public for m in members if m.public["id"] != participant.id]
        await self._broadcast(participant, "peer-joined", participant.public())
        asyncio.ensure_future(self._start_media(participant))
        logger.info("participant %s (%s) joined room %s", participant.id, participant.name, participant.room_id,
                    extra={"room_id": participant.room_id, "participant_id": participant.id})
        return self._welcome(participant, peers)

    def _media_info(self, participant: Participant) -> dict[str, Any]:
        return {"name": participant.name, "facility": participant.facility, "role": participant.identity.role,
                "limits": participant.limits}

    async def _start_media(self, participant: Participant) -> None:
        try:
            await self.media.join(participant.room_id, participant.id, self._media_info(participant))
            if self.registry.get(participant.id) is not participant:  # left while media was starting
                await self.media.leave(participant.id)
                return
            await self.recording.media_joined(participant.room_id)
        except Exception:
            logger.exception("media join failed for %s", participant.id)
            if participant.sid is not None:
                await self._fail(participant.sid, "join", "internal", "media session could not start")

    async def _resume(self, sid: str, identity: Identity, message: schemas.Join) -> dict[str, Any]:
        participant = self.registry.by_resume_token(message.resume or "")
        restored = False
        if participant is None:  # cluster: its signaling process died, its seat is in Redis
            try:
                participant = await self.roster.restore(message.resume or "")
            except RedisError as exc:
                raise SignalingError("service-degraded", f"service degraded: Redis unreachable ({exc})") from None
            restored = participant is not None
        if participant is None or participant.room_id != message.room:
            raise SignalingError("bad-resume", "this session has ended; join again")
        if participant.identity.user_id != identity.user_id:
            # A resume token is a secret, but should one leak it must not let anyone else take over the seat.
            raise SignalingError("forbidden", "this session belongs to someone else")
        timer = self._expiry.pop(participant.id, None)
        if timer is not None:
            timer.cancel()
        if participant.sid is not None and participant.sid != sid:
            await self.sio.disconnect(participant.sid)
        if restored:
            self.registry.add(participant, sid)
            # This process speaks for it now: its media session restarts through here (the client reconnects).
            await self.media.adopt(participant.room_id, participant.id, self._media_info(participant))
            asyncio.ensure_future(self.to_local(sid, "media-failed", {}))
        else:
            self.registry.attach(participant, sid)
        await self.sio.enter_room(sid, room_channel(participant.room_id))
        try:
            members = await self.roster.members(participant.room_id)
        except RedisError:
            members = [Member(p.public(), p.identity) for p in self.registry.members(participant.room_id)]
        peers = [m.public for m in members if m.public["id"] != participant.id]
        if participant.pending_offer is not None:
            asyncio.ensure_future(self.to_local(sid, "offer", participant.pending_offer))
        logger.info("participant %s resumed%s", participant.id, " (its signaling process had stopped)" * restored,
                    extra={"room_id": participant.room_id, "participant_id": participant.id})
        return self._welcome(participant, peers)

    def _welcome(self, participant: Participant, peers: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "ok": True,
            "self": participant.public(),
            "peers": peers,
            "resumeToken": participant.resume_token,
            "iceServers": self._ice_servers,
            "recording": self.recording.state(participant.room_id),
        }

    async def on_answer(self, sid: str, participant: Participant, message: schemas.Sdp) -> dict[str, Any]:
        await self.media.answer(participant.id, message.sdp)
        participant.pending_offer = None
        return {"ok": True}

    async def on_offer(self, sid: str, participant: Participant, message: schemas.Sdp) -> dict[str, Any]:
        answer = await self.media.offer(participant.id, message.sdp)
        await self.to_local(sid, "answer", {"sdp": answer})
        return {"ok": True}

    async def on_candidate(self, sid: str, participant: Participant, message: schemas.Candidate) -> dict[str, Any]:
        await self.media.candidate(participant.id, message.candidate, message.sdpMid, message.sdpMLineIndex)
        return {"ok": True}

    async def on_media_state(self, sid: str, participant: Participant, message: schemas.MediaState) -> dict[str, Any]:
        participant.audio_muted = message.audioMuted
        participant.video_off = message.videoOff
        try:
            await self.roster.update(participant)
        except RedisError as exc:  # peers are told all the same; a later joiner may see the old state
            logger.warning("media state of %s not saved: Redis unreachable (%s)", participant.id, exc)
        await self._broadcast(participant, "peer-updated", participant.public())
        return {"ok": True}

    async def on_restart_media(self, sid: str, participant: Participant, message: schemas.Empty) -> dict[str, Any]:
        participant.pending_offer = None
        await self.media.restart(participant.id)
        return {"ok": True}

    async def on_leave(self, sid: str, participant: Participant, message: schemas.Empty) -> dict[str, Any]:
        await self._remove(participant)
        return {"ok": True}

    async def on_unknown(self, event: str, sid: str, data: Any = None) -> dict[str, Any]:
        return await self._fail(sid, event[:64], "unknown-event", f"unknown event {event[:64]!r}")

    def room_summary(self, room_id: str | None = None, facility_id: str | None = None) -> list[dict[str, Any]]:
        """Rooms and who is in them; with ``facility_id``, only rooms where a signed-in member is of that facility."""
        rooms = [room_id] if room_id is not None else sorted(self.registry.rooms)
        return [
            {"id": r, "participants": [p.public() for p in self.registry.members(r)]}
            for r in rooms
            if r in self.registry.rooms
            and (facility_id is None or any(p.identity.facility_id == facility_id for p in self.registry.members(r)))
        ]
