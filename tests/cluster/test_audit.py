"""The recordings audit log in Redis gives what the embedded file gives: the same entries, newest first, per
recording, and the same CSV; two processes' entries end up in one log."""

from __future__ import annotations

from pathlib import Path

import pytest
from cluster_support import Scratch, needs_redis, scratch  # noqa: F401 - a fixture

from cluster import audit as redis_audit
from cluster.audit import RedisAudit
from signaling.recordings.audit import AuditLog

pytestmark = needs_redis


async def fill(first: AuditLog, second: AuditLog) -> None:
    for n in range(7):
        await (first, second)[n % 2].record(
            ("list", "track", "zip")[n % 3], (200, 403)[n % 2], actor=f"admin{n % 2}", role="admin",
            remote="10.0.0.5", recording=("rec-a", "rec-b", None)[n % 3], file=f"track-{n}.mkv" if n % 3 == 1 else None,
            detail="=HYPERLINK(\"x\")" if n == 4 else "Mường Tè")  # fmt: skip


async def test_entries_read_the_same_through_both_backends(tmp_path: Path, scratch: Scratch) -> None:
    await fill(AuditLog(tmp_path / "audit.log"), AuditLog(tmp_path / "audit.log"))
    await fill(AuditLog(RedisAudit(scratch.redis, scratch.keys)), AuditLog(RedisAudit(scratch.redis, scratch.keys)))
    embedded, clustered = AuditLog(tmp_path / "audit.log"), AuditLog(RedisAudit(scratch.redis, scratch.keys))

    def strip(entries: list[dict[str, object]]) -> list[dict[str, object]]:
        return [{k: v for k, v in entry.items() if k != "at"} for entry in entries]  # the clocks differ

    for recording in (None, "rec-a", "rec-b", "rec-none"):
        assert strip(clustered.latest(3, recording)) == strip(embedded.latest(3, recording))
        assert strip(list(clustered.entries(recording))) == strip(list(embedded.entries(recording)))
    assert [e["action"] for e in clustered.latest(3)] == ["list", "zip", "track"]  # newest first
    assert [e["recording"] for e in clustered.entries("rec-b")] == ["rec-b", "rec-b"]
    assert len(list(clustered.entries())) == 7 and clustered.latest(0) == []
    csv_text = "".join(clustered.csv())
    assert csv_text.count("\r\n") == 8 and "'=HYPERLINK" in csv_text  # header + 7, formulas defused


async def test_a_long_log_is_read_a_page_at_a_time(scratch: Scratch, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(redis_audit, "_PAGE", 3)
    log = AuditLog(RedisAudit(scratch.redis, scratch.keys))
    for n in range(8):
        await log.record("list", 200, actor="a", role="admin", remote=None, detail=str(n))
    assert [e["detail"] for e in log.entries()] == [str(n) for n in range(8)]
