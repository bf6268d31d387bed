"""Each connection point's caps, kept in the embedded store (they outlive calls and restarts)."""

from __future__ import annotations

import sqlite3
import time
from typing import Any, Protocol

__all__ = ["CapsRecords", "CapsStore"]


class CapsRecords(Protocol):
    """Where points' caps are kept: this SQLite store, or Redis in cluster mode (``cluster/point_caps.py``)."""

    def get(self, point_id: str) -> dict[str, Any] | None: ...
    def put(self, point_id: str, uplink_kbps: int | None, downlink_kbps: int | None, audio_only: bool,
            set_by: str) -> dict[str, Any]: ...
    def delete(self, point_id: str) -> bool: ...

_SCHEMA = """
CREATE TABLE IF NOT EXISTS point_caps (
    point_id TEXT PRIMARY KEY,
    uplink_kbps INTEGER,
    downlink_kbps INTEGER,
    audio_only INTEGER NOT NULL,
    set_by TEXT NOT NULL,
    set_at REAL NOT NULL
);
"""


class CapsStore:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        self._db.executescript(_SCHEMA)

    def get(self, point_id: str) -> dict[str, Any] | None:
        """``{uplinkKbps, downlinkKbps, audioOnly, setBy, setAt}`` of a point, None when it has no caps."""
        row = self._db.execute("SELECT * FROM point_caps WHERE point_id = ?", (point_id,)).fetchone()
        if row is None:
            return None
        return {"uplinkKbps": row["uplink_kbps"], "downlinkKbps": row["downlink_kbps"],
                "audioOnly": bool(row["audio_only"]), "setBy": row["set_by"], "setAt": row["set_at"]}

    def put(self, point_id: str, uplink_kbps: int | None, downlink_kbps: int | None, audio_only: bool,
            set_by: str) -> dict[str, Any]:
        self._db.execute(
            "INSERT INTO point_caps VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (point_id) DO UPDATE SET "
            "uplink_kbps = excluded.uplink_kbps, downlink_kbps = excluded.downlink_kbps, "
            "audio_only = excluded.audio_only, set_by = excluded.set_by, set_at = excluded.set_at",
            (point_id, uplink_kbps, downlink_kbps, int(audio_only), set_by, time.time()),
        )
        caps = self.get(point_id)
        assert caps is not None
        return caps

    def delete(self, point_id: str) -> bool:
        """Remove a point's caps; False when it had none."""
        return self._db.execute("DELETE FROM point_caps WHERE point_id = ?", (point_id,)).rowcount > 0
