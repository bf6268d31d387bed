"""A point's link-test history in the embedded store: newest first, paged, kept across a reopen."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from signaling.linktests.history import LinkTestHistory
from signaling.store import connect


def result(test_id: str, point: str, at: float, tier: str = "360p") -> dict[str, Any]:
    return {"id": test_id, "pointId": point, "facilityId": "ttyt-muong-te", "startedAt": at, "finishedAt": at + 12,
            "startedBy": "ktv.lan", "status": "complete", "rttMs": 42.0, "verdict": {"tier": tier, "reasons": []}}


def test_history_of_a_point(tmp_path: Path) -> None:
    history = LinkTestHistory(connect(tmp_path))
    for i in range(5):
        history.add(result(f"{i:032x}", "ttyt-muong-te-hc1", 1000.0 + i))
    history.add(result("f" * 32, "bv-bach-mai-hc1", 2000.0))
    listed = history.of_point("ttyt-muong-te-hc1")
    assert [r["startedAt"] for r in listed] == [1004.0, 1003.0, 1002.0, 1001.0, 1000.0]
    assert listed[0]["verdict"]["tier"] == "360p" and listed[0]["rttMs"] == 42.0
    assert [r["startedAt"] for r in history.of_point("ttyt-muong-te-hc1", limit=2, before=1003.0)] == [1002.0, 1001.0]
    assert history.last_start("ttyt-muong-te-hc1") == 1004.0 and history.last_start("nowhere") is None
    assert history.get("f" * 32)["pointId"] == "bv-bach-mai-hc1" and history.get("0" * 31 + "9") is None

    reopened = LinkTestHistory(connect(tmp_path))  # another process, or after a restart
    assert len(reopened.of_point("ttyt-muong-te-hc1")) == 5


def test_recent_is_the_brief_of_the_latest_results(tmp_path: Path) -> None:
    history = LinkTestHistory(connect(tmp_path))
    for i in range(4):
        full = {**result(f"{i:032x}", "ttyt-muong-te-hc1", 1000.0 + i, ("720p", "180p")[i % 2]),
                "jitterMs": 1.5 * i, "loss": 0.01 * i, "downKbps": 100.0 * i, "upKbps": None,
                "details": {"pings": [[n, 40.0] for n in range(300)]}}
        full["verdict"]["carries"] = {"vi": f"vi {i}", "en": f"en {i}"}
        history.add(full)
    history.add(result("f" * 32, "bv-bach-mai-hc1", 2000.0) | {"verdict": {"tier": "none", "carries": {}}})
    brief = history.recent("ttyt-muong-te-hc1", 3)
    fields = ("id", "startedAt", "status", "rttMs", "jitterMs", "loss", "downKbps", "upKbps")
    assert brief == [{**{k: r.get(k) for k in fields}, "tier": r["verdict"]["tier"], "carries": r["verdict"]["carries"]}
                     for r in history.of_point("ttyt-muong-te-hc1", 3)]
    assert [b["startedAt"] for b in brief] == [1003.0, 1002.0, 1001.0] and brief[0]["tier"] == "180p"
    assert brief[0]["upKbps"] is None and history.recent("nowhere", 3) == []
