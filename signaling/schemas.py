"""Schemas of every inbound socket.io message. Strict: wrong types are errors, unknown fields are errors."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

MAX_SDP_CHARS = 60_000  # a 9-party offer is ≈ 25 kB; anything much larger is not an SDP we produce or accept

RoomId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
DisplayName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=80)]
PointId = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]
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
    point: PointId | None = None
    """The connection point the page is at (signed-in staff of its facility): its caps apply (``caps/``)."""


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


class AudioOnly(Message):
    """A participant switches its own site to audio-only (or back)."""

    on: bool


# -- sharing in a room -----------------------------------------------------------------------------------------

ItemId = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{32}$")]
VITAL_UNITS = {
    "heartRate": "/min",
    "systolic": "mmHg",
    "diastolic": "mmHg",
    "spo2": "%",
    "temperature": "°C",
    "respiratoryRate": "/min",
}
"""The unit of every vital sign: fixed, so a number can never be read in the wrong unit."""


class Vitals(Message):
    """A vitals card. Every sign is optional, at least one is required; ranges are what a living patient can show,
    so a typo (720 for 72) is refused instead of alarming the room."""

    heartRate: Annotated[int, Field(ge=20, le=300)] | None = None
    systolic: Annotated[int, Field(ge=40, le=300)] | None = None
    diastolic: Annotated[int, Field(ge=20, le=200)] | None = None
    spo2: Annotated[int, Field(ge=50, le=100)] | None = None
    temperature: Annotated[float, Field(ge=30, le=45)] | None = None
    respiratoryRate: Annotated[int, Field(ge=4, le=80)] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Vitals:
        if all(getattr(self, name) is None for name in VITAL_UNITS):
            raise ValueError(f"give at least one of {', '.join(VITAL_UNITS)}")
        if (self.systolic is None) != (self.diastolic is None):
            raise ValueError("blood pressure needs both systolic and diastolic")
        if self.systolic is not None and self.diastolic is not None and self.systolic <= self.diastolic:
            raise ValueError("systolic pressure must be higher than diastolic")
        return self


Coordinate = Annotated[float, Field(ge=0, le=1)]
Point = Annotated[list[Coordinate], Field(min_length=2, max_length=2)]
MAX_STROKE_POINTS = 200


class Annotate(Message):
    """A mark on a shared image, in coordinates normalised to 0..1 (x from the left, y from the top).

    ``pointer``: where someone points now (one point, shown live, not kept); ``pin``: a placed marker (one point);
    ``stroke``: a drawn line (2 to 200 points). Pins and strokes are kept with the consult record.
    """

    imageId: ItemId
    shape: Literal["pointer", "pin", "stroke"]
    points: Annotated[list[Point], Field(min_length=1, max_length=MAX_STROKE_POINTS)]

    @model_validator(mode="after")
    def _points_fit_shape(self) -> Annotate:
        if self.shape in ("pointer", "pin") and len(self.points) != 1:
            raise ValueError(f"a {self.shape} has exactly one point")
        if self.shape == "stroke" and len(self.points) < 2:
            raise ValueError("a stroke has at least two points")
        return self
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


# -- link tests ----------------------------------------------------------------------------------------------

TestId = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{32}$")]
LinkTestPath = Literal["udp", "turn-udp", "turn-tcp", "turn-tls"]


class LinkTestStart(Message):
    point: Slug


class LinkTestAnswer(Message):
    testId: TestId
    path: LinkTestPath
    sdp: Annotated[str, StringConstraints(min_length=1, max_length=MAX_SDP_CHARS)]


class LinkTestCancel(Message):
    testId: TestId
