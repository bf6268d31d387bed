"""A room's media (mediasoup's Router): each member's producers, and one consumer of each on every other member."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiortc import RTCConfiguration

from .errors import MediaError
from .forwarder import Producer
from .transport import PeerTransport

Notify = Callable[[str, str, dict[str, Any]], Awaitable[None]]  # participant id, event, payload


@dataclass
class Member:
    participant_id: str
    producers: dict[str, Producer]
    transport: PeerTransport
    restarts: int = field(default=0)


class Router:
    # Swappable for another media path on the same signaling (bench/baseline.py: aiortc's MediaRelay).
    producer_class: type[Producer] = Producer
    transport_class: type[PeerTransport] = PeerTransport

    def __init__(self, room_id: str, configuration: RTCConfiguration, notify: Notify) -> None:
        self.room_id = room_id
        self.members: dict[str, Member] = {}
        self._configuration = configuration
        self._notify = notify
        self._lock = asyncio.Lock()  # membership changes one at a time

    def _transport(self, participant_id: str, producers: dict[str, Producer]) -> PeerTransport:
        async def notify(event: str, payload: dict[str, Any]) -> None:
            await self._notify(participant_id, event, payload)

        return self.transport_class(participant_id, self._configuration, producers, notify)

    def member(self, participant_id: str) -> Member:
        member = self.members.get(participant_id)
        if member is None:
            raise MediaError("not-joined", f"participant {participant_id} has no media session")
        return member

    async def join(self, participant_id: str) -> None:
        async with self._lock:
            if participant_id in self.members:
                raise MediaError("internal", f"participant {participant_id} already has a media session")
            producers = {kind: self.producer_class(participant_id, kind) for kind in ("audio", "video")}
            transport = self._transport(participant_id, producers)
            for other in self.members.values():
                for producer in other.producers.values():
                    transport.add_consumer(producer)
                for producer in producers.values():
                    other.transport.add_consumer(producer)
            self.members[participant_id] = Member(participant_id, producers, transport)
            await asyncio.gather(*(m.transport.renegotiate() for m in self.members.values()))

    async def leave(self, participant_id: str) -> None:
        async with self._lock:
            member = self.members.pop(participant_id, None)
            if member is None:
                return
            for producer in member.producers.values():
                producer.close()
            await member.transport.close()
            for other in self.members.values():
                for producer in member.producers.values():
                    await other.transport.remove_consumer(producer)
            await asyncio.gather(*(m.transport.renegotiate() for m in self.members.values()))

    async def restart(self, participant_id: str) -> None:
        """Replace a member's failed peer connection; the others keep their consumers and see a freeze."""
        async with self._lock:
            member = self.member(participant_id)
            old = member.transport
            member.transport = self._transport(participant_id, member.producers)
            member.restarts += 1
            for other in self.members.values():
                if other is not member:
                    for producer in other.producers.values():
                        member.transport.add_consumer(producer)
            await old.close()
            await member.transport.renegotiate()

    async def close(self) -> None:
        """End the room at once (shutdown): no renegotiation with members who are all leaving."""
        async with self._lock:
            members, self.members = list(self.members.values()), {}
            for member in members:
                for producer in member.producers.values():
                    producer.close()
            await asyncio.gather(*(m.transport.close() for m in members))
