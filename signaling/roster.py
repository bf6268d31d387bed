"""Who is in a room, whichever signaling process speaks for them, and the one check that races: room capacity.

One process: the roster is its ``RoomRegistry`` (``LocalRoster``). A cluster: a Redis hash per room, admitted by a
Lua script (``cluster/roster.py``), so two joins on two processes cannot both take the last seat, and a participant
whose process died can resume on another one.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from .auth import Identity
from .rooms import Participant, RoomRegistry

__all__ = ["LocalRoster", "Member", "Roster"]


@dataclass(frozen=True)
class Member:
    """A participant of a room as every process sees it: what peers are shown, and who it is."""

    public: dict[str, Any]
    identity: Identity


Gone = Callable[[str, Member], Awaitable[None]]
"""Called with a room and a member whose process died and who did not resume anywhere in time."""


class Roster(Protocol):
    async def add(self, participant: Participant, limit: int) -> bool:
        """Take a seat in ``participant.room_id`` unless it already has ``limit`` members (False: full)."""

    async def update(self, participant: Participant) -> None:
        """``participant.public()`` changed (muted, camera off)."""

    async def remove(self, participant: Participant) -> bool:
        """Give up the seat; False if another process speaks for the participant now (it resumed there)."""

    async def members(self, room_id: str) -> list[Member]: ...

    async def restore(self, resume_token: str) -> Participant | None:
        """A participant another process spoke for (it died), found by its resume token; None if unknown."""

    async def start(self, local: Callable[[], list[Participant]], gone: Gone) -> None:
        """Keep this process's participants' seats (``local``) alive and report seats left by dead processes."""

    async def close(self) -> None: ...


class LocalRoster:
    """One process: the registry knows everyone, and nothing awaits between the capacity check and the add."""

    def __init__(self, registry: RoomRegistry) -> None:
        self._registry = registry

    async def add(self, participant: Participant, limit: int) -> bool:
        return len(self._registry.members(participant.room_id)) < limit

    async def update(self, participant: Participant) -> None:
        pass  # the registry holds the participant itself

    async def remove(self, participant: Participant) -> bool:
        return True

    async def members(self, room_id: str) -> list[Member]:
        return [Member(p.public(), p.identity) for p in self._registry.members(room_id)]

    async def restore(self, resume_token: str) -> Participant | None:
        return None  # no other process

    async def start(self, local: Callable[[], list[Participant]], gone: Gone) -> None:
        pass

    async def close(self) -> None:
        pass
