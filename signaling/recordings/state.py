"""``admin.json``: what signaling adds to a recording (legal hold, combined-file job), next to what media wrote.

Kept beside the recording rather than in a database so that the directory stays the whole record: copy it
elsewhere and its hold travels with it. Only this process writes it, through one lock, whole and atomically.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from collections.abc import Callable
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from .files import ADMIN, NotFound, RecordingFiles

__all__ = ["AdminState", "AdminStates", "CombineJob"]

logger = logging.getLogger(__name__)


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class CombineJob(_Model):
    state: Literal["none", "queued", "running", "done", "failed"] = "none"
    progress: float = 0.0
    """Percent of the recording's duration encoded so far."""
    requested_by: str | None = None
    started_at: datetime.datetime | None = None
    finished_at: datetime.datetime | None = None
    error: str | None = None

    @property
    def busy(self) -> bool:
        return self.state in ("queued", "running")


class AdminState(_Model):
    hold: bool = False
    hold_by: str | None = None
    hold_at: datetime.datetime | None = None
    combine: CombineJob = CombineJob()


class AdminStates:
    def __init__(self, files: RecordingFiles) -> None:
        self.files = files
        self.lock = asyncio.Lock()
        """Held while reading, changing and writing a state, and while deciding on and doing a deletion."""

    def get(self, recording_id: str) -> AdminState:
        """The recording's admin state; defaults when it has none yet.

        An ``admin.json`` that cannot be read counts as on hold: a damaged file must never let a recording be
        deleted.
        """
        try:
            data = self.files.read(recording_id, ADMIN)
        except NotFound:
            return AdminState()
        try:
            return AdminState.model_validate_json(data)
        except ValidationError:
            logger.error("recording %s: unreadable %s, treated as on legal hold", recording_id, ADMIN)
            return AdminState(hold=True)

    async def update(self, recording_id: str, change: Callable[[AdminState], AdminState]) -> AdminState:
        """Read, change and write back as one step (hold toggles and job progress may come at once)."""
        async with self.lock:
            state = change(self.get(recording_id))
            await asyncio.to_thread(self.files.replace, recording_id, ADMIN, state.model_dump_json(indent=1).encode())
            return state
