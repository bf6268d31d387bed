"""Link-test history in Redis gives what the embedded history gives: the same results, pages, briefs and last
start, through both backends."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cluster_support import Scratch, needs_redis, scratch  # noqa: F401 - a fixture

from cluster.link_tests import RedisLinkTestHistory
from signaling.linktests.history import LinkTestHistory, LinkTestRecords
from signaling.store import connect

pytestmark = needs_redis
POINT, OTHER = "ttyt-muong-te-hc1", "bv-bach-mai-hc1"


def result(i: int, point: str, at: float) -> dict[str, Any]:
    return {"id": f"{i:032x}", "pointId": point, "facilityId": "ttyt-muong-te", "startedAt": at,
            "finishedAt": at + 12, "startedBy": "ktv.lan", "status": ("complete", "partial")[i % 2],
            "rttMs": 40.0 + i, "jitterMs": 1.5 * i, "loss": 0.01 * i, "downKbps": 100.0 * i,
            "upKbps": None if i % 3 else 512.0, "details": {"pings": [[n, 40.0] for n in range(50)]},
            "verdict": {"tier": ("720p", "180p", "audio")[i % 3], "carries": {"vi": f"vi {i}", "en": f"en {i}"},
                        "reasons": []}}  # fmt: skip


def fill(history: LinkTestRecords) -> None:
    for i in range(7):
        history.add(result(i, POINT, 1000.0 + i * 0.25))
    history.add(result(99, OTHER, 2000.5))


def read(history: LinkTestRecords) -> dict[str, Any]:
    return {
        "all": history.of_point(POINT),
        "paged": history.of_point(POINT, limit=2, before=1001.0),
        "recent": history.recent(POINT, 3),
        "other": history.recent(OTHER, 3),
        "none": (history.of_point("nowhere"), history.recent("nowhere", 3), history.last_start("nowhere")),
        "last": (history.last_start(POINT), history.last_start(OTHER)),
        "get": (history.get(f"{99:032x}"), history.get("0" * 32), history.get("e" * 32)),
    }


def test_the_same_results_read_the_same_through_both_backends(tmp_path: Path, scratch: Scratch) -> None:
    fill(LinkTestHistory(connect(tmp_path)))
    fill(RedisLinkTestHistory(scratch.redis, scratch.keys))
    clustered = read(RedisLinkTestHistory(scratch.redis, scratch.keys))  # another process
    assert clustered == read(LinkTestHistory(connect(tmp_path)))
    assert [r["startedAt"] for r in clustered["all"]] == [1001.5, 1001.25, 1001.0, 1000.75, 1000.5, 1000.25, 1000.0]
    assert [r["startedAt"] for r in clustered["paged"]] == [1000.75, 1000.5]  # strictly before
    assert clustered["recent"][0] == {"id": f"{6:032x}", "startedAt": 1001.5, "status": "complete", "tier": "720p",
                                      "carries": {"vi": "vi 6", "en": "en 6"}, "rttMs": 46.0, "jitterMs": 9.0,
                                      "loss": 0.06, "downKbps": 600.0, "upKbps": 512.0}  # fmt: skip
    assert clustered["last"] == (1001.5, 2000.5) and clustered["none"] == ([], [], None)
    assert clustered["get"][0] is not None and clustered["get"][0]["pointId"] == OTHER
