"""Every link test's result, per connection point, in the embedded store: a point's history survives restarts.

Rows are written only by the server, from tests it ran and measured itself (``service.py``): there is no way to
submit a result. A row keeps the whole result (figures, paths, verdict) as JSON next to the columns a history
is listed and filtered by.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any, Protocol

__all__ = ["BRIEF_FIELDS", "LinkTestHistory", "LinkTestRecords", "brief"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS link_tests (
    id TEXT PRIMARY KEY,
    point_id TEXT NOT NULL,
    facility_id TEXT NOT NULL,
    started_at REAL NOT NULL,
    finished_at REAL NOT NULL,
    started_by TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('complete', 'partial', 'rejected')),
    tier TEXT NOT NULL,
    result TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS link_tests_by_point ON link_tests (point_id, started_at);
"""


class LinkTestRecords(Protocol):
    """Link-test history as the service and the API use it: the embedded ``LinkTestHistory`` (SQLite), or in a
    cluster ``cluster.link_tests.RedisLinkTestHistory``, so a result stored by one process is read by every one."""

    def add(self, result: dict[str, Any]) -> None: ...
    def of_point(self, point_id: str, limit: int = 50, before: float | None = None) -> list[dict[str, Any]]: ...
    def recent(self, point_id: str, limit: int) -> list[dict[str, Any]]: ...
    def get(self, test_id: str) -> dict[str, Any] | None: ...
    def last_start(self, point_id: str) -> float | None: ...


BRIEF_FIELDS = ("id", "startedAt", "status", "tier", "carries", "rttMs", "jitterMs", "loss", "downKbps", "upKbps")
"""What ``recent`` gives of each result."""


def brief(result: dict[str, Any]) -> dict[str, Any]:
    """A whole result reduced to what ``recent`` lists (the embedded store picks the same fields in SQL)."""
    verdict = result["verdict"]
    return {"id": result["id"], "startedAt": result["startedAt"], "status": result["status"],
            "tier": verdict["tier"], "carries": verdict.get("carries"), "rttMs": result.get("rttMs"),
            "jitterMs": result.get("jitterMs"), "loss": result.get("loss"), "downKbps": result.get("downKbps"),
            "upKbps": result.get("upKbps")}  # fmt: skip


class LinkTestHistory:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        db.executescript(_SCHEMA)

    def add(self, result: dict[str, Any]) -> None:
        """Keep one finished test (``result`` as ``service.py`` builds it: id, point, facility, times, verdict...)."""
        self._db.execute(
            "INSERT INTO link_tests (id, point_id, facility_id, started_at, finished_at, started_by, status, tier,"
            " result) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (result["id"], result["pointId"], result["facilityId"], result["startedAt"], result["finishedAt"],
             result["startedBy"], result["status"], result["verdict"]["tier"],
             json.dumps(result, ensure_ascii=False, separators=(",", ":"))),
        )

    def of_point(self, point_id: str, limit: int = 50, before: float | None = None) -> list[dict[str, Any]]:
        """The point's results, newest first; ``before``: only tests started earlier (to page back)."""
        rows = self._db.execute(
            "SELECT result FROM link_tests WHERE point_id = ? AND started_at < ? ORDER BY started_at DESC LIMIT ?",
            (point_id, float("inf") if before is None else before, limit),
        ).fetchall()
        return [json.loads(row["result"]) for row in rows]

    def recent(self, point_id: str, limit: int) -> list[dict[str, Any]]:
        """The point's latest results in brief (what a dashboard row shows), newest first: SQLite picks the fields
        out of each stored result, so the ping series and ramp steps are never parsed (10x faster than
        ``of_point`` for a dashboard of every point)."""
        rows = self._db.execute(
            "SELECT id, started_at, status, tier, json_extract(result, '$.verdict.carries') AS carries,"
            " json_extract(result, '$.rttMs') AS rtt, json_extract(result, '$.jitterMs') AS jitter,"
            " json_extract(result, '$.loss') AS loss, json_extract(result, '$.downKbps') AS down,"
            " json_extract(result, '$.upKbps') AS up"
            " FROM link_tests WHERE point_id = ? ORDER BY started_at DESC LIMIT ?",
            (point_id, limit),
        ).fetchall()
        return [{"id": r["id"], "startedAt": r["started_at"], "status": r["status"], "tier": r["tier"],
                 "carries": json.loads(r["carries"]), "rttMs": r["rtt"], "jitterMs": r["jitter"], "loss": r["loss"],
                 "downKbps": r["down"], "upKbps": r["up"]} for r in rows]

    def get(self, test_id: str) -> dict[str, Any] | None:
        row = self._db.execute("SELECT result FROM link_tests WHERE id = ?", (test_id,)).fetchone()
        return None if row is None else json.loads(row["result"])

    def last_start(self, point_id: str) -> float | None:
        """When the point's latest test started (the rate limit holds across restarts)."""
        row = self._db.execute("SELECT MAX(started_at) AS at FROM link_tests WHERE point_id = ?", (point_id,)).fetchone()
        return None if row is None or row["at"] is None else float(row["at"])
