"""Sharing in a room: images, vitals cards and annotations, shown to everyone at once and kept with the record.

Who may share: signed-in accounts (doctor, technician, admin) while they are participants of the room; what they
share carries their name into the medical record, which a guest (no account) cannot. Everyone in the room, guests
included, receives what is shared as it happens (``shared-item``, ``pointer``). Who may look at a room's record
later: the accounts that took part in that room, and admins.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from .. import schemas
from ..auth import Identity
from ..config import SharingConfig
from ..events import RoomGate, SignalingError, SignalingEvents
from ..rooms import Participant
from .files import SharedFiles
from .images import clean_image
from .record import Author, SharedItem, SharedItems

__all__ = ["SHARING_ROLES", "Sharing"]

logger = logging.getLogger(__name__)

SHARING_ROLES: frozenset[str] = frozenset({"doctor", "technician", "admin"})
_MAX_BUCKETS = 1000
_DECODES_AT_ONCE = 2  # a 50-megapixel RGB bitmap is 150 MB and a decode takes a core: uploads queue instead


class TokenBucket:
    """``rate`` events per second on average, ``burst`` at once."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, burst
        self.tokens = float(burst)
        self.at = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


class _Attendance(RoomGate):
    """Remembers which accounts joined a room: they (and admins) may look at its record afterwards."""

    def __init__(self, record: SharedItems) -> None:
        self._record = record

    def joined(self, room_id: str, identity: Identity, members: list[Identity]) -> None:
        if identity.user_id is not None:
            self._record.attended(room_id, identity.user_id)


class Sharing:
    def __init__(self, record: SharedItems, files: SharedFiles, events: SignalingEvents, config: SharingConfig) -> None:
        self.record = record
        self.files = files
        self.events = events
        self.config = config
        self._buckets: dict[str, TokenBucket] = {}
        self._decoding = asyncio.Semaphore(_DECODES_AT_ONCE)
        events.add_event("share-vitals", schemas.Vitals, self.on_vitals, roles=SHARING_ROLES)
        events.add_event("annotate", schemas.Annotate, self.on_annotate, roles=SHARING_ROLES)
        events.gates.append(_Attendance(record))

    # -- who ----------------------------------------------------------------------------------------------

    def participant(self, identity: Identity, room_id: str) -> Participant | None:
        """The account's seat in this room now, if it has one (connected or within its reconnect grace)."""
        for member in self.events.registry.members(room_id):
            if identity.user_id is not None and member.identity.user_id == identity.user_id:
                return member
        return None

    def may_view(self, identity: Identity, room_id: str) -> bool:
        if identity.role == "admin":
            return True
        return identity.user_id is not None and self.record.has_attended(room_id, identity.user_id)

    # -- what ---------------------------------------------------------------------------------------------

    async def share_image(self, participant: Participant, data: bytes, caption: str | None) -> SharedItem:
        """Check, clean, store and show an uploaded image; ``ImageRejected`` stores and shows nothing."""
        async with self._decoding:
            image = await asyncio.to_thread(clean_image, data, self.config.max_image_pixels)
        item_id = self.record.new_id()
        room_id = participant.room_id
        await asyncio.to_thread(self.files.write, room_id, item_id, image.format, image.data)
        metadata: dict[str, Any] = {
            "format": image.format, "width": image.width, "height": image.height, "bytes": len(image.data),
            "caption": caption,
        }  # fmt: skip
        try:
            item = self.record.add(room_id, "image", _author(participant), metadata, item_id=item_id)
        except BaseException:
            self.files.remove(room_id, item_id, image.format)
            raise
        logger.info("%s shared image %s (%d×%d) in room %s", item.author.username, item.id, image.width,
                    image.height, room_id)
        await self.events.to_room(room_id, "shared-item", item.public())
        return item

    async def on_vitals(self, sid: str, participant: Participant, message: schemas.Vitals) -> dict[str, Any]:
        values = message.model_dump(exclude_none=True)
        units = {name: schemas.VITAL_UNITS[name] for name in values}
        item = self.record.add(participant.room_id, "vitals", _author(participant), {"values": values, "units": units})
        await self.events.to_room(participant.room_id, "shared-item", item.public())
        return {"ok": True, "item": item.public()}

    async def on_annotate(self, sid: str, participant: Participant, message: schemas.Annotate) -> dict[str, Any]:
        if not self._bucket(participant.id).take():
            raise SignalingError("rate-limited", f"at most {self.config.annotation_rate:g} annotations per second")
        image = self.record.get(participant.room_id, message.imageId)
        if image is None or image.kind != "image":
            raise SignalingError("not-found", "no such image shared in this room")
        if message.shape == "pointer":
            (x, y), = message.points
            pointer = {"imageId": image.id, "participantId": participant.id, "name": participant.name, "x": x, "y": y}
            await self.events.to_room(participant.room_id, "pointer", pointer, exclude=participant)
            return {"ok": True}
        data = {"imageId": image.id, "shape": message.shape, "points": message.points}
        item = self.record.add(participant.room_id, "annotation", _author(participant), data)
        await self.events.to_room(participant.room_id, "shared-item", item.public())
        return {"ok": True, "item": item.public()}

    def _bucket(self, participant_id: str) -> TokenBucket:
        bucket = self._buckets.get(participant_id)
        if bucket is None:
            if len(self._buckets) >= _MAX_BUCKETS:  # forget participants who have left
                for gone in [p for p in self._buckets if self.events.registry.get(p) is None]:
                    del self._buckets[gone]
            bucket = self._buckets[participant_id] = TokenBucket(self.config.annotation_rate,
                                                                 self.config.annotation_burst)
        return bucket


def _author(participant: Participant) -> Author:
    identity = participant.identity
    return Author(identity.user_id or "", participant.name, identity.facility_id or participant.facility, participant.id)
