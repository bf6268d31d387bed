"""Statistics on a known set of consults are exact: counts, answered share, median and 90th percentile of the time
to answer, grouped by facility, province, specialty and (local) day; the same through the API and the CSV."""

from __future__ import annotations

import csv
import datetime
import io
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from support import ROOT, Server

from signaling.consult_log import ConsultLog, LogFilter, Party
from signaling.directory import load_directory
from signaling.statistics import day_bounds, percentile, statistics
from signaling.store import connect

HCM = ZoneInfo("Asia/Ho_Chi_Minh")
UTC = datetime.UTC
CALLERS = {
    "ttyt-muong-te": (Party("bs.huyen", "BS. Giàng A Páo", "ttyt-muong-te"), "lai-chau"),
    "ttyt-sin-ho": (Party("bs.sin", "BS. Lò Văn Sìn", "ttyt-sin-ho"), "lai-chau"),
    "ttyt-ky-son": (Party("bs.kyson", "BS. Vi Văn Sơn", "ttyt-ky-son"), "nghe-an"),
}
ANSWERER = Party("pgs.tim", "PGS. Nguyễn Văn Tâm", "bv-bach-mai")
# (facility, specialty, requested at (UTC), outcome, seconds to answer)
KNOWN = [
    ("ttyt-muong-te", "tim-mach", datetime.datetime(2025, 3, 1, 2, 0, tzinfo=UTC), "answered", 10.0),
    ("ttyt-muong-te", "tim-mach", datetime.datetime(2025, 3, 1, 3, 0, tzinfo=UTC), "answered", 20.0),
    ("ttyt-muong-te", "nhi", datetime.datetime(2025, 3, 1, 4, 0, tzinfo=UTC), "answered", 30.0),
    ("ttyt-muong-te", "tim-mach", datetime.datetime(2025, 3, 1, 5, 0, tzinfo=UTC), "answered", 40.0),
    ("ttyt-muong-te", "tim-mach", datetime.datetime(2025, 3, 1, 6, 0, tzinfo=UTC), "unanswered", None),
    ("ttyt-muong-te", "nhi", datetime.datetime(2025, 3, 1, 7, 0, tzinfo=UTC), "cancelled", None),
    # 18:30 UTC on the 1st is 01:30 on the 2nd in Vietnam: it belongs to the 2nd
    ("ttyt-sin-ho", "tim-mach", datetime.datetime(2025, 3, 1, 18, 30, tzinfo=UTC), "answered", 5.5),
    ("ttyt-ky-son", "ngoai-chan-thuong", datetime.datetime(2025, 3, 2, 1, 0, tzinfo=UTC), "answered", 61.25),
    ("ttyt-ky-son", "ngoai-chan-thuong", datetime.datetime(2025, 3, 2, 2, 0, tzinfo=UTC), "interrupted", None),
    # outside the range asked for below
    ("ttyt-muong-te", "tim-mach", datetime.datetime(2025, 2, 28, 16, 59, tzinfo=UTC), "answered", 999.0),
]


def fill(store: Path) -> None:
    """Write KNOWN into the consult log at ``store``; the one left open is closed as interrupted when the log is
    opened again, as after a crash."""
    log = ConsultLog(connect(store), datetime.datetime(2025, 3, 2, 2, 30, tzinfo=UTC))
    for number, (facility, specialty, at, outcome, seconds) in enumerate(KNOWN):
        caller, province = CALLERS[facility]
        consult_id = f"{number:016x}"
        log.requested(consult_id, at, caller, province, None, specialty, "urgent", "Tóm tắt", None)
        log.event(consult_id, at + datetime.timedelta(milliseconds=5), 5.0, "ring", ANSWERER, "wave 1")
        if outcome == "answered":
            assert seconds is not None
            log.answered(consult_id, at + datetime.timedelta(seconds=seconds), seconds * 1000, ANSWERER,
                         f"consult-{consult_id}")  # fmt: skip
        elif outcome in ("cancelled", "unanswered"):
            log.closed(consult_id, at + datetime.timedelta(seconds=90), 90_000.0, outcome)  # type: ignore[arg-type]
    ConsultLog(connect(store), datetime.datetime(2025, 3, 2, 2, 30, tzinfo=UTC))


def test_percentiles_interpolate_between_ranks() -> None:
    assert percentile([7.0], 0.5) == 7.0 and percentile([7.0], 0.9) == 7.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.5
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.9) == pytest.approx(3.7)
    assert percentile([10.0, 20.0, 30.0, 40.0, 50.0], 0.9) == pytest.approx(46.0)


MARCH = day_bounds(datetime.date(2025, 3, 1), datetime.date(2025, 3, 2), HCM)
EXPECTED_TOTAL = {
    # 9 consults in range: answered 6 (10, 20, 30, 40, 5.5, 61.25); cancelled 1; unanswered 1 + interrupted 1
    "count": 9, "answered": 6, "cancelled": 1, "unanswered": 2, "open": 0,
    "answeredShare": round(6 / 9, 4),
    "medianAnswerSeconds": 25.0,  # sorted 5.5, 10, 20, 30, 40, 61.25 → (20 + 30) / 2
    "p90AnswerSeconds": 50.625,  # position 4.5 → 40 + 0.5 × (61.25 − 40)
}  # fmt: skip


def test_statistics_on_a_known_set_are_exact(tmp_path: Path) -> None:
    fill(tmp_path)
    log = ConsultLog(connect(tmp_path), datetime.datetime(2025, 3, 3, tzinfo=UTC))
    directory = load_directory(ROOT / "directory.yaml")
    rows = log.rows(LogFilter(start=MARCH[0], end=MARCH[1]))
    by_facility = statistics(rows, "facility", directory, HCM)
    assert by_facility["total"] == EXPECTED_TOTAL
    assert by_facility["groups"] == [
        {"key": "ttyt-ky-son", "name": "Trung tâm Y tế Kỳ Sơn", "count": 2, "answered": 1, "cancelled": 0,
         "unanswered": 1, "open": 0, "answeredShare": 0.5, "medianAnswerSeconds": 61.25, "p90AnswerSeconds": 61.25},
        {"key": "ttyt-muong-te", "name": "Trung tâm Y tế Mường Tè", "count": 6, "answered": 4, "cancelled": 1,
         "unanswered": 1, "open": 0, "answeredShare": round(4 / 6, 4), "medianAnswerSeconds": 25.0,
         "p90AnswerSeconds": 37.0},  # 10, 20, 30, 40: position 2.7 → 30 + 0.7 × 10
        {"key": "ttyt-sin-ho", "name": "Trung tâm Y tế Sìn Hồ", "count": 1, "answered": 1, "cancelled": 0,
         "unanswered": 0, "open": 0, "answeredShare": 1.0, "medianAnswerSeconds": 5.5, "p90AnswerSeconds": 5.5},
    ]  # fmt: skip
    by_province = {g["key"]: (g["name"], g["count"], g["answered"]) for g in
                   statistics(rows, "province", directory, HCM)["groups"]}  # fmt: skip
    assert by_province == {"lai-chau": ("Lai Châu", 7, 5), "nghe-an": ("Nghệ An", 2, 1)}
    by_specialty = {g["key"]: (g["count"], g["medianAnswerSeconds"]) for g in
                    statistics(rows, "specialty", directory, HCM)["groups"]}  # fmt: skip
    assert by_specialty == {"ngoai-chan-thuong": (2, 61.25), "nhi": (2, 30.0), "tim-mach": (5, 15.0)}  # 5.5, 10, 20, 40
    by_day = {g["key"]: g["count"] for g in statistics(rows, "day", directory, HCM)["groups"]}
    assert by_day == {"2025-03-01": 6, "2025-03-02": 3}  # the 18:30 UTC call counts on the 2nd, Vietnam time
    # filters narrow before computing
    muong_te = log.rows(LogFilter(start=MARCH[0], end=MARCH[1], facility="ttyt-muong-te", specialty="tim-mach"))
    assert statistics(muong_te, "facility", directory, HCM)["total"]["p90AnswerSeconds"] == 36.0  # 10, 20, 40
    assert [r["id"] for r in log.rows(LogFilter(outcome="interrupted"))] == [f"{8:016x}"]


def test_statistics_api_and_csv_are_exact(tmp_path: Path) -> None:
    fill(tmp_path / "data")
    server = Server(tmp_path)
    server.start()
    try:
        import asyncio

        asyncio.run(_check_api(server))
    finally:
        server.stop()


async def _check_api(server: Server) -> None:
    status, body = await server.get("/api/statistics?from=2025-03-01&to=2025-03-02&by=facility", user="admin")
    assert status == 200, body
    assert body["total"] == EXPECTED_TOTAL and body["from"] == "2025-03-01" and body["to"] == "2025-03-02"
    assert body["timezone"] == "Asia/Ho_Chi_Minh" and [g["key"] for g in body["groups"]] == [
        "ttyt-ky-son", "ttyt-muong-te", "ttyt-sin-ho"]  # fmt: skip
    _, one_day = await server.get("/api/statistics?from=2025-03-02&to=2025-03-02&by=day", user="admin")
    assert [(g["key"], g["count"]) for g in one_day["groups"]] == [("2025-03-02", 3)]
    _, lai_chau = await server.get("/api/statistics?from=2025-03-01&to=2025-03-02&province=lai-chau", user="admin")
    assert lai_chau["total"]["count"] == 7 and lai_chau["total"]["medianAnswerSeconds"] == 20.0
    # bad input: a clear error, never a plausible-looking empty answer
    for query, code, words in (
        ("facility=ttyt-khong-co", "unknown-facility", "'ttyt-khong-co' is not in the directory"),
        ("specialty=chiem-tinh", "unknown-specialty", "'chiem-tinh'"),
        ("province=Lai%20Chau", "invalid-payload", "province"),
        ("from=2025-03-05&to=2025-03-01", "invalid-payload", "before"),
        ("from=yesterday", "invalid-payload", "from"),
        ("by=hospital", "invalid-payload", "by"),
        ("outcome=maybe", "invalid-payload", "outcome"),
        ("nonsense=1", "invalid-payload", "nonsense"),
    ):
        status, refused = await server.get(f"/api/statistics?{query}", user="admin")
        assert status == 400 and refused["error"]["code"] == code and words in refused["error"]["message"], query

    token = await server.login("admin")
    import aiohttp

    async with aiohttp.ClientSession() as session:
        async with session.get(server.url + "/api/consults.csv?from=2025-03-01&to=2025-03-02",
                               headers={"Authorization": f"Bearer {token}"}) as response:  # fmt: skip
            assert response.status == 200 and response.headers["Content-Type"].startswith("text/csv")
            assert "attachment" in response.headers["Content-Disposition"]
            text = (await response.read()).decode("utf-8-sig")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == 9 and "summary" not in rows[0]
    first = next(r for r in rows if r["id"] == f"{0:016x}")
    assert first == {
        "id": f"{0:016x}", "requested_at": "2025-03-01T02:00:00.000+00:00", "caller": "bs.huyen",
        "caller_name": "BS. Giàng A Páo", "caller_facility": "ttyt-muong-te", "province": "lai-chau", "point": "",
        "specialty": "tim-mach", "urgency": "urgent", "target": "", "outcome": "answered", "answered_by": "pgs.tim",
        "answerer_name": "PGS. Nguyễn Văn Tâm", "answerer_facility": "bv-bach-mai",
        "answered_at": "2025-03-01T02:00:10.000+00:00", "answer_seconds": "10.000", "rings": "1",
        "closed_at": "2025-03-01T02:00:10.000+00:00", "joined_at": "", "ended_at": "",
    }  # fmt: skip
    assert sorted(r["outcome"] for r in rows) == sorted(
        ["answered"] * 6 + ["cancelled", "unanswered", "interrupted"])
