"""Retention: recordings older than ``recording.retention_days`` are deleted, unless kept for a reason.

A recording is kept while it is still being written, on legal hold, or having its combined file made; the same
rules refuse a manual delete (``why_kept``). The sweep runs at start and then hourly; each deletion is audited
with the actor ``system``. Every signaling process of a cluster sweeps the one shared directory: a deletion is
claimed first (``jobs.deletion``), together with the recording's combine job (none may start while it goes), so
exactly one process deletes each recording and audits it once; a manual delete claims the same way.
"""

from __future__ import annotations

import asyncio
import datetime
import logging

from .audit import SYSTEM, AuditLog
from .catalogue import Catalogue, Manifest
from .files import NotFound
from .jobs import JobClaims, LocalClaims, deletion
from .state import AdminState, AdminStates

__all__ = ["KEPT_BECAUSE", "Retention", "why_kept"]

logger = logging.getLogger(__name__)

SWEEP_INTERVAL = 3600.0


KEPT_BECAUSE = {
    "recording": "the recording is still running",
    "hold": "the recording is on legal hold",
    "combining": "a combined file is being made",
    "deleting": "the recording is being deleted",
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
    def __init__(
        self, catalogue: Catalogue, states: AdminStates, audit: AuditLog, days: int, claims: JobClaims | None = None
    ) -> None:
        self.catalogue = catalogue
        self.states = states
        self.audit = audit
        self.days = days
        self.claims = claims or LocalClaims()

    async def sweep(self, now: datetime.datetime | None = None) -> list[str]:
        """Delete what has expired; the ids deleted."""
        if self.days == 0:
            return []
        await asyncio.to_thread(self.catalogue.files.purge_removed)
        cutoff = (now or datetime.datetime.now(datetime.UTC)) - datetime.timedelta(days=self.days)
        deleted = []
        for manifest in self.catalogue.all():
            if manifest.ended_or_started < cutoff and await self._delete_once(manifest):
                deleted.append(manifest.id)
        return deleted

    async def _delete_once(self, manifest: Manifest) -> bool:
        """Delete an expired recording unless it is kept, or another process has the deletion or a combine of it."""
        with deletion(self.claims, manifest.id) as claim:
            claim.done = claim.refused is None and await self._delete(manifest)
        if claim.done:
            logger.info("retention: deleted recording %s (ended %s)", manifest.id, manifest.ended_or_started)
            await self.audit.record(
                "retention-delete", 200, actor=SYSTEM, role=SYSTEM, remote=None, recording=manifest.id,
                detail=f"older than {self.days} days",
            )  # fmt: skip
        return claim.done

    async def _delete(self, manifest: Manifest) -> bool:
        async with self.states.lock:  # a hold set meanwhile is seen, and wins
            if why_kept(manifest, self.states.get(manifest.id)):
                return False
            try:
                await asyncio.to_thread(self.catalogue.files.remove, manifest.id)
            except (NotFound, OSError) as exc:
                logger.error("retention: cannot delete recording %s: %s", manifest.id, exc)
                return False
        return True

    async def run(self) -> None:
        """Sweep now and every ``SWEEP_INTERVAL`` seconds, for as long as the server runs."""
        while True:
            try:
                await self.sweep()
            except Exception:  # a bad sweep must not end retention for good
                logger.exception("retention sweep failed")
            await asyncio.sleep(SWEEP_INTERVAL)
