"""The audit log of recordings: who did what to which recording, when, from where. Append-only JSON lines.

Why a plain file: it must outlive any database migration and be readable with ``grep`` by an inspector; one JSON
object per line, each written with ``O_APPEND`` and fsynced before the access it records goes ahead, so an entry
is on disk even if the server dies mid-download. A line torn by a power cut is skipped when reading. In a cluster
the entries go to Redis instead (``cluster.audit.RedisAudit``, the same JSON objects), so every signaling process
writes to, and lists, one log.
"""

from __future__ import annotations

import asyncio
import collections
import csv
import datetime
import io
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

__all__ = ["FIELDS", "SYSTEM", "AuditLog", "AuditStore", "FileAudit"]

FIELDS = ("at", "actor", "role", "remote", "action", "recording", "file", "status", "detail")
SYSTEM = "system"
"""The actor of what the server does by itself (retention)."""
_MAX_TEXT = 200  # requests from anyone are logged; their strings are clipped
_CSV_PIECE = 64 * 1024
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


class AuditStore(Protocol):
    """Where entries are kept. Called from a thread: it may block."""

    def append(self, entry: dict[str, Any]) -> None:
        """Keep one entry durably before returning."""

    def entries(self, recording: str | None = None) -> Iterator[dict[str, Any]]:
        """Every entry, oldest first, optionally only those about one recording."""

    def latest(self, limit: int, recording: str | None = None) -> list[dict[str, Any]]:
        """The newest ``limit`` entries, newest first."""


class AuditLog:
    def __init__(self, where: Path | AuditStore) -> None:
        """``where``: the embedded log's file, or another store (Redis in a cluster)."""
        self.store: AuditStore = FileAudit(where) if isinstance(where, Path) else where
        self._lock = asyncio.Lock()

    async def record(
        self,
        action: str,
        status: int,
        *,
        actor: str | None,
        role: str | None,
        remote: str | None,
        recording: str | None = None,
        file: str | None = None,
        detail: str | None = None,
    ) -> None:
        """Append one entry, durably, before returning."""
        entry = {
            "at": datetime.datetime.now(datetime.UTC).isoformat(),
            "actor": actor,
            "role": role,
            "remote": remote,
            "action": action,
            "recording": _clip(recording),
            "file": _clip(file),
            "status": status,
            "detail": _clip(detail),
        }
        async with self._lock:  # one writer at a time: lines never interleave
            await asyncio.to_thread(self.store.append, entry)

    def entries(self, recording: str | None = None) -> Iterator[dict[str, Any]]:
        """Every entry, oldest first, optionally only those about one recording."""
        return self.store.entries(recording)

    def latest(self, limit: int, recording: str | None = None) -> list[dict[str, Any]]:
        """The newest ``limit`` entries, newest first."""
        return self.store.latest(limit, recording)

    def csv(self, recording: str | None = None) -> Iterator[str]:
        """The log as CSV text in pieces of about 64 KiB (oldest first), safe to open in a spreadsheet."""
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=FIELDS, extrasaction="ignore", lineterminator="\r\n")
        writer.writeheader()
        for entry in self.entries(recording):
            writer.writerow({key: _cell(entry.get(key)) for key in FIELDS})
            if buffer.tell() >= _CSV_PIECE:
                yield buffer.getvalue()
                buffer.seek(0)
                buffer.truncate()
        yield buffer.getvalue()


class FileAudit:
    """The embedded audit log: JSON lines appended to one file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def append(self, entry: dict[str, Any]) -> None:
        line = (json.dumps(entry, ensure_ascii=False) + "\n").encode()
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)

    def entries(self, recording: str | None = None) -> Iterator[dict[str, Any]]:
        """Every entry, oldest first, optionally only those about one recording."""
        try:
            file = open(self.path, encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return
        with file:
            for line in file:
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                if isinstance(entry, dict) and (recording is None or entry.get("recording") == recording):
                    yield entry

    def latest(self, limit: int, recording: str | None = None) -> list[dict[str, Any]]:
        return list(reversed(collections.deque(self.entries(recording), maxlen=limit)))


def _clip(text: str | None) -> str | None:
    return text if text is None or len(text) <= _MAX_TEXT else text[:_MAX_TEXT] + "…"


def _cell(value: Any) -> Any:
    """Defuse spreadsheet formulas: a request path such as ``=HYPERLINK(…)`` reaches the log unauthenticated."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value
