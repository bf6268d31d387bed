"""Retention: recordings older than ``recording.retention_days`` are deleted, unless kept for a reason.

A recording is kept while it is still being written, on legal hold, or having its combined file made; the same
rules refuse a manual delete (``why_kept``). The sweep runs at start and then hourly; each deletion is audited
with the actor ``system``.
"""

from __future__ import annotations

import asyncio
import datetime
import logging

from .audit import SYSTEM, AuditLog
from .catalogue import Catalogue, Manifest
from .files import NotFound
from .state import AdminState, AdminStates

__all__ = ["KEPT_BECAUSE", "Retention", "why_kept"]

logger = logging.getLogger(__name__)

SWEEP_INTERVAL = 3600.0


KEPT_BECAUSE = {
    "recording": "the recording is still running",
    "hold": "the recording is on legal hold",
    "combining": "a combined file is being made",
}


def why_kept(manifest: Manifest, state: AdminState) -> str | None:
    """Why this recording must not be deleted now (a ``KEPT_BECAUSE`` key), or None if it may be."""
    if manifest.state == "recording":
        return "recording"
    if state.hold:
        return "hold"
    if state.combine.busy:
        return "combining"
    return None


class Retention:
    def __init__(self, catalogue: Catalogue, states: AdminStates, audit: AuditLog, days: int) -> None:
        self.catalogue = catalogue
        self.states = states
        self.audit = audit
        self.days = days

    async def sweep(self, now: datetime.datetime | None = None) -> list[str]:
        """Delete what has expired; the ids deleted."""
        if self.days == 0:
            return []
        await asyncio.to_thread(self.catalogue.files.purge_removed)
        cutoff = (now or datetime.datetime.now(datetime.UTC)) - datetime.timedelta(days=self.days)
        deleted = []
        for manifest in self.catalogue.all():
            if manifest.ended_or_started >= cutoff:
                continue
            async with self.states.lock:  # a hold set meanwhile is seen, and wins
                if why_kept(manifest, self.states.get(manifest.id)):
                    continue
                try:
                    await asyncio.to_thread(self.catalogue.files.remove, manifest.id)
                except (NotFound, OSError) as exc:
                    logger.error("retention: cannot delete recording %s: %s", manifest.id, exc)
                    continue
            deleted.append(manifest.id)
            logger.info("retention: deleted recording %s (ended %s)", manifest.id, manifest.ended_or_started)
            await self.audit.record(
                "retention-delete", 200, actor=SYSTEM, role=SYSTEM, remote=None, recording=manifest.id,
                detail=f"older than {self.days} days",
            )  # fmt: skip
        return deleted

    async def run(self) -> None:
        """Sweep now and every ``SWEEP_INTERVAL`` seconds, for as long as the server runs."""
        while True:
            try:
                await self.sweep()
            except Exception:  # a bad sweep must not end retention for good
                logger.exception("retention sweep failed")
            await asyncio.sleep(SWEEP_INTERVAL)
