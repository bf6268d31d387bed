"""Schemas of every inbound socket.io message. Strict: wrong types are errors, unknown fields are errors."""

from __future__ import annotations

from typing import Annotated

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
