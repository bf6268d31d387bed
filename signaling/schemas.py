"""Schemas of every inbound socket.io message. Strict: wrong types are errors, unknown fields are errors."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

MAX_SDP_CHARS = 60_000  # a 9-party offer is ≈ 25 kB; anything much larger is not an SDP we produce or accept

RoomId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
DisplayName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=80)]
FacilityName = Annotated[str, StringConstraints(strip_whitespace=True, max_length=120)]


class Message(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class Join(Message):
    room: RoomId
    name: DisplayName | None = None
    """Required from guests; a signed-in participant's name and facility come from the account instead."""
    facility: FacilityName = ""
    resume: Annotated[str, StringConstraints(max_length=128)] | None = None
    record: bool | None = None  # the room's first participant chooses, when the recording policy is "ask"


class Sdp(Message):
    sdp: Annotated[str, StringConstraints(min_length=1, max_length=MAX_SDP_CHARS)]


class Candidate(Message):
    candidate: Annotated[str, StringConstraints(max_length=1024)]
    sdpMid: Annotated[str, StringConstraints(max_length=64)] | None = None
    sdpMLineIndex: Annotated[int, Field(ge=0, le=1024)] | None = None
    usernameFragment: Annotated[str, StringConstraints(max_length=256)] | None = None


class MediaState(Message):
    audioMuted: bool
    videoOff: bool


class Empty(Message):
    pass


# -- lobby and dispatch ----------------------------------------------------------------------------------------

Slug = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]
"""A directory id (facility, point, specialty): what the directory file allows."""
ConsultId = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{16}$")]
Username = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$")]
MAX_SUMMARY_CHARS = 1000


class LobbyEnter(Message):
    point: Slug | None = None
    """The connection point this page runs at (one of the account's facility), or none: a doctor's own device."""


class Duty(Message):
    onDuty: bool


class ConsultRequest(Message):
    specialty: Slug
    urgency: Literal["routine", "urgent", "emergency"]
    summary: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_SUMMARY_CHARS)]
    target: Slug | None = None
    """A central hospital to ring first; none = the caller's partners first."""
    point: Slug | None = None


class ConsultRef(Message):
    consult: ConsultId


class ConsultInvite(Message):
    consult: ConsultId
    username: Username
