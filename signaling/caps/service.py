"""What limits apply to each participant, and putting a change in force mid-call.

A participant's limits combine its connection point's stored caps (``store.py``, set by a technician) and its own
audio-only switch (the ``audio-only`` event): media gets them at join (``info["limits"]``) and at every change
(``MediaService.limit``); the room gets the participant's ``peer-updated`` (its own page included), so every tile
shows "audio only" or "capped at N kbit/s". In a cluster the caps are in Redis and a change is announced to every
signaling process (``cluster/point_caps.py``), each applying it to its own participants.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from redis.exceptions import RedisError

from media.errors import MediaError
from media.limits import Limits

from .. import schemas
from ..auth import PARTICIPANT_ROLES
from ..events import SignalingError, SignalingEvents
from ..rooms import Participant
from .store import CapsRecords

if TYPE_CHECKING:
    from cluster.point_caps import CapsChannel

__all__ = ["SiteLimits"]

logger = logging.getLogger(__name__)


class SiteLimits:
    def __init__(self, events: SignalingEvents, store: CapsRecords, channel: CapsChannel | None = None) -> None:
        """``channel``: cluster mode, where the other signaling processes hear of changes."""
        self.events = events
        self.store = store
        self.channel = channel
        events.limits_of = self.limits_of
        events.add_event("audio-only", schemas.AudioOnly, self.on_audio_only, roles=PARTICIPANT_ROLES)

    def limits_of(self, participant: Participant) -> dict[str, Any]:
        caps = self.store.get(participant.point) if participant.point is not None else None
        if caps is None:
            return Limits(audio_only=participant.audio_only).as_dict()
        return Limits(caps["uplinkKbps"], caps["downlinkKbps"], caps["audioOnly"] or participant.audio_only).as_dict()

    async def apply(self, participant: Participant) -> None:
        """Recompute a participant's limits; if they changed, put them in force and tell the room."""
        limits = self.limits_of(participant)
        if limits == participant.limits:
            return
        participant.limits = limits
        try:
            await self.events.media.limit(participant.id, limits)
        except MediaError as exc:  # media not started yet (its join carries them) or gone: nothing to change
            logger.info("limits of %s not sent to media: %s", participant.id, exc.message)
        try:
            await self.events.roster.update(participant)
        except RedisError as exc:  # the room is told all the same; a later joiner may see the old state
            logger.warning("limits of %s not saved: Redis unreachable (%s)", participant.id, exc)
        await self.events.to_room(participant.room_id, "peer-updated", participant.public())

    async def changed(self, point_id: str) -> None:
        """A point's caps were stored anew: apply them here, and (cluster) tell the other signaling processes."""
        await self.point_changed(point_id)
        if self.channel is not None:
            try:
                await self.channel.announce(point_id)
            except RedisError as exc:
                logger.error("caps of %s not announced: Redis unreachable (%s); other processes' participants "
                             "get them at their next join", point_id, exc)

    async def start(self) -> None:
        if self.channel is not None:
            self.channel.start(self.point_changed)

    async def close(self) -> None:
        if self.channel is not None:
            await self.channel.close()

    async def point_changed(self, point_id: str) -> None:
        """A point's caps changed: apply them to everyone in a room from that point."""
        for members in list(self.events.registry.rooms.values()):
            for participant in list(members.values()):
                if participant.point == point_id:
                    await self.apply(participant)

    async def on_audio_only(self, sid: str, participant: Participant,
                            message: schemas.AudioOnly) -> dict[str, Any]:
        before, participant.audio_only = participant.audio_only, message.on
        try:
            await self.apply(participant)
        except RedisError as exc:  # cluster: the point's caps cannot be read; nothing changed
            participant.audio_only = before
            raise SignalingError("service-degraded", f"service degraded: Redis unreachable ({exc})") from None
        return {"ok": True, "limits": participant.limits}
