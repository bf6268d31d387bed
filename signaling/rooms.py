"""Signaling's view of rooms: the participants this process speaks for, on which socket, and how to resume them.

Who else is in a room (on other signaling processes too) is the ``Roster``'s business (``roster.py``)."""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass, field
from typing import Any

from .auth import Identity


@dataclass
class Participant:
    id: str
    room_id: str
    name: str
    facility: str
    identity: Identity
    resume_token: str
    sid: str | None = None
    audio_muted: bool = False
    video_off: bool = False
    pending_offer: dict[str, Any] | None = field(default=None, repr=False)
    facility_name: str = ""
    """The facility as people know it (the directory's name); ``facility`` stays the id the server checks."""
    point: str | None = None
    """The connection point it joined from, whose caps apply to it (``caps/``)."""
    audio_only: bool = False
    """Its own audio-only switch (its point's caps may make it audio-only too: see ``limits``)."""
    limits: dict[str, Any] = field(default_factory=dict)
    """The limits in force for it (``media/limits.py`` wire form), shown on its tile to everyone."""

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "facility": self.facility,
            "facilityName": self.facility_name or self.facility,
            "role": self.identity.role,
            "audioMuted": self.audio_muted,
            "videoOff": self.video_off,
            "point": self.point,
            "audioOnlySelf": self.audio_only,
            "limits": self.limits,
        }


class RoomRegistry:
    def __init__(self) -> None:
        self.rooms: dict[str, dict[str, Participant]] = {}
        self.by_sid: dict[str, Participant] = {}
        self._by_token: dict[str, Participant] = {}
        self._by_id: dict[str, Participant] = {}

    @staticmethod
    def new(room_id: str, name: str, facility: str, identity: Identity) -> Participant:
        """A participant with fresh ids, not in any room yet (the roster admits it first)."""
        return Participant(
            id=uuid.uuid4().hex[:12],
            room_id=room_id,
            name=name,
            facility=facility,
            identity=identity,
            resume_token=secrets.token_urlsafe(24),
        )

    def add(self, participant: Participant, sid: str | None) -> None:
        """This process now speaks for ``participant`` (connected on ``sid``, or None: waiting for a resume)."""
        participant.sid = sid
        self.rooms.setdefault(participant.room_id, {})[participant.id] = participant
        if sid is not None:
            self.by_sid[sid] = participant
        self._by_token[participant.resume_token] = participant
        self._by_id[participant.id] = participant

    def by_resume_token(self, token: str) -> Participant | None:
        return self._by_token.get(token)

    def attach(self, participant: Participant, sid: str) -> None:
        if participant.sid is not None:
            self.by_sid.pop(participant.sid, None)
        participant.sid = sid
        self.by_sid[sid] = participant

    def detach(self, sid: str) -> Participant | None:
        participant = self.by_sid.pop(sid, None)
        if participant is not None:
            participant.sid = None
        return participant

    def remove(self, participant: Participant) -> None:
        room = self.rooms.get(participant.room_id, {})
        room.pop(participant.id, None)
        if not room:
            self.rooms.pop(participant.room_id, None)
        if participant.sid is not None:
            self.by_sid.pop(participant.sid, None)
        self._by_token.pop(participant.resume_token, None)
        self._by_id.pop(participant.id, None)

    def members(self, room_id: str) -> list[Participant]:
        return list(self.rooms.get(room_id, {}).values())

    def get(self, participant_id: str) -> Participant | None:
        return self._by_id.get(participant_id)

    def all(self) -> list[Participant]:
        return list(self._by_id.values())
