"""Once-only recordings jobs (a retention delete, a combine): claimed before they are done, so that of all the
signaling processes sharing a recordings directory exactly one does each.

Embedded mode has one process: its claims are kept in memory (``LocalClaims``). A cluster decides them in Redis
(``cluster/job_claims.py``), behind the same interface.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal, Protocol

__all__ = ["COMBINE", "DELETE", "Deletion", "JobClaims", "JobKind", "LocalClaims", "deletion"]

JobKind = Literal["delete", "combine"]
DELETE: JobKind = "delete"
COMBINE: JobKind = "combine"


class JobClaims(Protocol):
    def claim(self, kind: JobKind, recording_id: str) -> bool:
        """Take the job: True if this process now holds it; False if another holds it, or it was finished."""

    def release(self, kind: JobKind, recording_id: str) -> None:
        """Give the job up (done with, or not done): it may be claimed again."""

    def finish(self, kind: JobKind, recording_id: str) -> None:
        """The job is done for good (a deletion): claims of it are refused from now on."""


class LocalClaims:
    """One process's claims, in memory."""

    def __init__(self) -> None:
        self._held: dict[tuple[JobKind, str], bool] = {}  # -> finished

    def claim(self, kind: JobKind, recording_id: str) -> bool:
        if (kind, recording_id) in self._held:
            return False
        self._held[kind, recording_id] = False
        return True

    def release(self, kind: JobKind, recording_id: str) -> None:
        if self._held.get((kind, recording_id)) is False:
            del self._held[kind, recording_id]

    def finish(self, kind: JobKind, recording_id: str) -> None:
        self._held[kind, recording_id] = True


@dataclass
class Deletion:
    refused: Literal["deleting", "combining"] | None
    """Why the recording may not be deleted now: another process deletes it, or a combine of it is queued or runs."""
    done: bool = False
    """Set by the deleter once the recording is gone: the deletion is then finished for good."""


@contextmanager
def deletion(claims: JobClaims, recording_id: str) -> Iterator[Deletion]:
    """Claim a recording's deletion together with its combine job (no combine may start while it goes); on leaving,
    the combine claim is released and the deletion finished if ``done`` was set, else released."""
    if not claims.claim(DELETE, recording_id):
        yield Deletion("deleting")
        return
    outcome = Deletion(None)
    try:
        if not claims.claim(COMBINE, recording_id):
            outcome.refused = "combining"
            yield outcome
            return
        try:
            yield outcome
        finally:
            claims.release(COMBINE, recording_id)
    finally:
        if outcome.done:
            claims.finish(DELETE, recording_id)
        else:
            claims.release(DELETE, recording_id)
