"""Which rooms are recorded, and keeping every participant told from their first second in the room."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from media.errors import MediaError
from media.service import MediaService

logger = logging.getLogger(__name__)

Broadcast = Callable[[str, str, dict[str, Any]], Awaitable[None]]  # room, event, payload
Policy = Literal["always", "never", "ask"]


class RecordingControl:
    def __init__(self, policy: Policy, media: MediaService, broadcast: Broadcast) -> None:
        self._policy = policy
        self._media = media
        self._broadcast = broadcast
        self._rooms: dict[str, dict[str, Any]] = {}
        self._starting: dict[str, asyncio.Future[None]] = {}

    def opened(self, room_id: str, requested: bool | None) -> None:
        """A room's first participant: decide now, so the join reply already says whether it is recorded."""
        active = self._policy == "always" or (self._policy == "ask" and requested is True)
        self._rooms[room_id] = {"active": active, "recordingId": None, "error": None}

    def state(self, room_id: str) -> dict[str, Any]:
        return dict(self._rooms.get(room_id) or {"active": False, "recordingId": None, "error": None})

    async def media_joined(self, room_id: str) -> None:
        """Start the recorder once the room has a media session (only the first call does)."""
        state = self._rooms.get(room_id)
        if state is None or not state["active"] or state["recordingId"] is not None or room_id in self._starting:
            return
        self._starting[room_id] = asyncio.get_running_loop().create_future()
        try:
            state["recordingId"] = await self._media.start_recording(room_id, {"consult_id": None})
            logger.info("room %s is recorded as %s", room_id, state["recordingId"])
        except MediaError as exc:
            state.update(active=False, error=exc.message)
            logger.error("room %s could not be recorded: %s", room_id, exc.message)
        finally:
            self._starting.pop(room_id).set_result(None)
        await self._broadcast(room_id, "recording-state", self.state(room_id))

    def media_reported(self, room_id: str, payload: dict[str, Any]) -> None:
        """Media stopped a recording by itself (disk full, unwritable directory)."""
        state = self._rooms.get(room_id)
        if state is not None:
            state.update(active=False, error=payload.get("error"))

    def closed(self, room_id: str) -> None:
        self._rooms.pop(room_id, None)
