"""audit: append-only JSON lines, newest-first reads, CSV that a spreadsheet opens safely."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from signaling.recordings.audit import FIELDS, AuditLog


async def test_entries_are_appended_and_read_back(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "store" / "audit.log")
    await log.record("list", 200, actor="quantri", role="admin", remote="127.0.0.1", detail="facility=x")
    await log.record("track", 200, actor="quantri", role="admin", remote="127.0.0.1", recording="r1", file="f.webm")
    await log.record("delete", 401, actor=None, role=None, remote="10.0.0.9", recording="r2")
    lines = (tmp_path / "store" / "audit.log").read_text().splitlines()
    assert len(lines) == 3 and all(set(json.loads(line)) == set(FIELDS) for line in lines)
    latest = log.latest(2)
    assert [e["action"] for e in latest] == ["delete", "track"]
    assert [e["action"] for e in log.latest(10, recording="r1")] == ["track"]
    assert latest[0]["at"].endswith("+00:00")


async def test_a_torn_line_is_skipped(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.log")
    await log.record("list", 200, actor="a", role="admin", remote="127.0.0.1")
    with open(tmp_path / "audit.log", "a") as file:
        file.write('{"at": "2026-')  # power cut mid-write
    assert len(log.latest(10)) == 1


async def test_csv_parses_and_defuses_formulas(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.log")
    await log.record("track", 401, actor=None, role=None, remote="127.0.0.1", file='=HYPERLINK("http://x")')
    await log.record("list", 200, actor="quantri", role="admin", remote="127.0.0.1", detail="facility=Mường Tè")
    rows = list(csv.DictReader(io.StringIO("".join(log.csv()))))
    assert [r["action"] for r in rows] == ["track", "list"]
    assert rows[0]["file"] == "'=HYPERLINK(\"http://x\")"
    assert rows[1]["detail"] == "facility=Mường Tè" and rows[1]["status"] == "200"
    assert "".join(AuditLog(tmp_path / "none.log").csv()).strip() == ",".join(FIELDS)
