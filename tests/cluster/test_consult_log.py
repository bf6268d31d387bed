"""The consult log in Redis gives what the embedded log gives: the same known consults, written through both, read
back as the same rows, details, parties, CSV and exactly the same statistics; consults left open are closed as
interrupted only when the process that owned them is gone; a batch is all or nothing."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from cluster_support import Scratch, needs_redis, scratch  # noqa: F401 - a fixture
from support import ROOT

from cluster.consult_log import RedisConsultLog
from cluster.keys import Keys
from signaling.consult_log import ConsultLog, ConsultRecords, LogFilter, Party, iter_csv_rows
from signaling.directory import load_directory
from signaling.statistics import GROUPS, day_bounds, statistics
from signaling.store import connect

pytestmark = needs_redis

UTC = datetime.UTC
HCM = ZoneInfo("Asia/Ho_Chi_Minh")
CALLERS = {
    "ttyt-muong-te": (Party("bs.huyen", "BS. Giàng A Páo", "ttyt-muong-te"), "lai-chau"),
    "ttyt-sin-ho": (Party("bs.sin", "BS. Lò Văn Sìn", "ttyt-sin-ho"), "lai-chau"),
    "ttyt-ky-son": (Party("bs.kyson", "BS. Vi Văn Sơn", "ttyt-ky-son"), "nghe-an"),
}
ANSWERERS = [Party("pgs.tim", "PGS. Nguyễn Văn Tâm", "bv-bach-mai"), Party("bs.nhi", "BS. Lê Thị Nhi", "bv-nhi-tw")]
EXPERT = Party("bs.ha", "BS. Hà", "bv-cho-ray")
# (facility, specialty, requested at (UTC), outcome, seconds to answer)
KNOWN = [
    ("ttyt-muong-te", "tim-mach", datetime.datetime(2025, 3, 1, 2, 0, tzinfo=UTC), "answered", 10.0),
    ("ttyt-muong-te", "tim-mach", datetime.datetime(2025, 3, 1, 3, 0, tzinfo=UTC), "answered", 20.0),
    ("ttyt-muong-te", "nhi", datetime.datetime(2025, 3, 1, 4, 0, tzinfo=UTC), "answered", 30.125),
    ("ttyt-muong-te", "tim-mach", datetime.datetime(2025, 3, 1, 5, 0, tzinfo=UTC), "answered", 40.0),
    ("ttyt-muong-te", "tim-mach", datetime.datetime(2025, 3, 1, 6, 0, tzinfo=UTC), "unanswered", None),
    ("ttyt-muong-te", "nhi", datetime.datetime(2025, 3, 1, 7, 0, tzinfo=UTC), "cancelled", None),
    ("ttyt-sin-ho", "tim-mach", datetime.datetime(2025, 3, 1, 18, 30, tzinfo=UTC), "answered", 5.5),  # the 2nd, HCM
    ("ttyt-ky-son", "ngoai-chan-thuong", datetime.datetime(2025, 3, 2, 1, 0, tzinfo=UTC), "answered", 61.25),
    ("ttyt-ky-son", "ngoai-chan-thuong", datetime.datetime(2025, 3, 2, 2, 0, tzinfo=UTC), "interrupted", None),
    ("ttyt-sin-ho", "nhi", datetime.datetime(2025, 3, 2, 2, 0, tzinfo=UTC), "answered", 7.0),  # same instant
    ("ttyt-muong-te", "tim-mach", datetime.datetime(2025, 2, 28, 16, 59, tzinfo=UTC), "answered", 999.0),  # outside
]
OPENED_AGAIN = datetime.datetime(2025, 3, 2, 2, 30, tzinfo=UTC)
MARCH = day_bounds(datetime.date(2025, 3, 1), datetime.date(2025, 3, 2), HCM)
FILTERS = [
    LogFilter(),
    LogFilter(start=MARCH[0], end=MARCH[1]),
    LogFilter(start=MARCH[0], end=MARCH[1], facility="ttyt-muong-te", specialty="tim-mach"),
    LogFilter(province="nghe-an"),
    LogFilter(outcome="interrupted"),
    LogFilter(party="bs.nhi"),
    LogFilter(party="bs.ha"),
    LogFilter(involving_facility="bv-nhi-tw"),
    LogFilter(start=datetime.datetime(2025, 3, 2, 2, 0, tzinfo=UTC), limit=2),
    LogFilter(end=datetime.datetime(2025, 3, 1, 3, 0, tzinfo=UTC)),  # end is exclusive
]


def fill(log: ConsultRecords) -> None:
    """Write KNOWN: rings, answers (some by the second answerer, one with an invited expert), closes, marks."""
    for number, (facility, specialty, at, outcome, seconds) in enumerate(KNOWN):
        caller, province = CALLERS[facility]
        consult_id = f"{number:016x}"
        answerer = ANSWERERS[number % 2]
        with log.batch():
            log.requested(consult_id, at, caller, province, None, specialty, "urgent", "Tóm tắt", None)
            for ring in range(number % 3 + 1):
                log.event(consult_id, at + datetime.timedelta(milliseconds=5), 5.0 + ring, "ring", ANSWERERS[ring % 2],
                          f"wave {ring + 1}")
        if outcome == "answered":
            assert seconds is not None
            answered = at + datetime.timedelta(seconds=seconds)
            log.answered(consult_id, answered, seconds * 1000, answerer, f"consult-{consult_id}")
            if number == 2:
                log.event(consult_id, answered, None, "invited", EXPERT)
            assert log.mark(consult_id, "joined_at", answered + datetime.timedelta(seconds=2))
            assert not log.mark(consult_id, "joined_at", answered + datetime.timedelta(seconds=9))
        elif outcome in ("cancelled", "unanswered"):
            log.closed(consult_id, at + datetime.timedelta(seconds=90), 90_000.0, outcome)  # type: ignore[arg-type]
    assert not log.mark("f" * 16, "ended_at", OPENED_AGAIN)  # no such consult: nothing is created


def everything(log: ConsultRecords) -> dict[str, Any]:
    directory = load_directory(ROOT / "directory.yaml")
    ids = [f"{number:016x}" for number in range(len(KNOWN))]
    in_march = log.rows(LogFilter(start=MARCH[0], end=MARCH[1]))
    return {
        "rows": [[dict(row) for row in log.rows(where)] for where in FILTERS],
        "statistics": {by: statistics(in_march, by, directory, HCM) for by in GROUPS},  # type: ignore[arg-type]
        "details": [log.get(i) for i in ids],
        "parties": [log.parties(i) for i in [*ids, "f" * 16]],
        "rings": log.ring_counts(ids),
        "csv": list(iter_csv_rows(log, LogFilter())),
    }


def test_the_same_consults_read_the_same_through_both_backends(tmp_path: Path, scratch: Scratch) -> None:
    fill(ConsultLog(connect(tmp_path), KNOWN[0][2]))
    fill(RedisConsultLog(scratch.redis, scratch.keys, "process-1", KNOWN[0][2]))
    embedded = everything(ConsultLog(connect(tmp_path), OPENED_AGAIN))  # a restart closes the open one
    clustered = everything(RedisConsultLog(scratch.redis, scratch.keys, "process-2", OPENED_AGAIN))
    assert clustered == embedded
    total = clustered["statistics"]["facility"]["total"]
    # 10 in range: answered 7 (10, 20, 30.125, 40, 5.5, 61.25, 7); cancelled 1; unanswered 1 + interrupted 1
    assert total == {"count": 10, "answered": 7, "cancelled": 1, "unanswered": 2, "open": 0,
                     "answeredShare": 0.7, "medianAnswerSeconds": 20.0,  # 5.5, 7, 10, [20], 30.125, 40, 61.25
                     "p90AnswerSeconds": 48.5}  # position 5.4 → 40 + 0.4 × 21.25  # fmt: skip
    assert [len(rows) for rows in clustered["rows"]] == [11, 10, 4, 2, 1, 4, 1, 4, 2, 2]
    assert clustered["details"][8]["outcome"] == "interrupted"
    assert clustered["details"][8]["events"][-1] == {"at": "2025-03-02T02:30:00.000+00:00", "elapsedMs": 1_800_000.0,
                                                     "kind": "interrupted", "username": None, "facility": None,
                                                     "detail": None}  # fmt: skip
    assert clustered["parties"][2] == {"bs.huyen": "caller", "pgs.tim": "answerer", "bs.ha": "invited"}
    assert clustered["parties"][-1] is None
    assert clustered["rings"] == {f"{n:016x}": n % 3 + 1 for n in range(len(KNOWN))}


def test_only_consults_of_a_process_that_is_gone_are_closed_as_interrupted(scratch: Scratch) -> None:
    at = datetime.datetime(2025, 3, 1, 2, 0, tzinfo=UTC)
    caller, province = CALLERS["ttyt-muong-te"]
    live, gone = RedisConsultLog(scratch.redis, scratch.keys, "live", at), RedisConsultLog(
        scratch.redis, scratch.keys, "gone", at)
    live.requested("a" * 16, at, caller, province, None, "nhi", "urgent", "Sốt", None)
    gone.requested("b" * 16, at, caller, province, None, "nhi", "urgent", "Sốt", None)
    scratch.redis.set(Keys.process_alive(scratch.keys.inbox("live")), "1", ex=30)
    starting = RedisConsultLog(scratch.redis, scratch.keys, "new", at + datetime.timedelta(seconds=5))
    RedisConsultLog(scratch.redis, scratch.keys, "newer", at + datetime.timedelta(seconds=6))  # closes nothing more
    consults = {row["id"]: row["outcome"] for row in starting.rows(LogFilter())}
    assert consults == {"a" * 16: "open", "b" * 16: "interrupted"}
    details = starting.get("b" * 16)
    assert details is not None and [e["kind"] for e in details["events"]] == ["requested", "interrupted"]


def test_a_batch_that_fails_writes_nothing(scratch: Scratch) -> None:
    at = datetime.datetime(2025, 3, 1, 2, 0, tzinfo=UTC)
    log = RedisConsultLog(scratch.redis, scratch.keys, "p", at)
    caller, province = CALLERS["ttyt-sin-ho"]
    with pytest.raises(RuntimeError), log.batch():
        log.requested("c" * 16, at, caller, province, None, "nhi", "urgent", "Sốt", None)
        log.event("c" * 16, at, 4.0, "ring", ANSWERERS[0])
        raise RuntimeError("dispatch failed half-way")
    assert log.get("c" * 16) is None and log.rows(LogFilter()) == []
    assert list(scratch.redis.scan_iter(match=scratch.keys.prefix + "*")) == []


def test_a_sweep_closes_a_dead_processs_consults_once_missed_twice_in_a_row(scratch: Scratch) -> None:
    at = datetime.datetime(2025, 3, 1, 2, 0, tzinfo=UTC)
    caller, province = CALLERS["ttyt-ky-son"]
    sweeper = RedisConsultLog(scratch.redis, scratch.keys, "sweeper", at)
    for process, consult_id in (("dies", "d" * 16), ("blips", "e" * 16)):
        RedisConsultLog(scratch.redis, scratch.keys, process, at).requested(
            consult_id, at, caller, province, None, "nhi", "urgent", "Sốt", None)
        scratch.redis.set(Keys.process_alive(scratch.keys.inbox(process)), "1", ex=30)

    def outcomes() -> dict[str, str]:
        return {row["id"]: row["outcome"] for row in sweeper.rows(LogFilter())}

    def sweep(seconds: int) -> None:
        sweeper.sweep(at + datetime.timedelta(seconds=seconds))

    sweep(6)
    scratch.redis.delete(Keys.process_alive(scratch.keys.inbox("dies")), Keys.process_alive(scratch.keys.inbox("blips")))
    sweep(12)  # both missing once: nothing closed yet
    assert outcomes() == {"d" * 16: "open", "e" * 16: "open"}
    scratch.redis.set(Keys.process_alive(scratch.keys.inbox("blips")), "1", ex=30)  # renewed once Redis is back
    sweep(18)
    assert outcomes() == {"d" * 16: "interrupted", "e" * 16: "open"}
    details = sweeper.get("d" * 16)
    assert details is not None and details["closedAt"] == "2025-03-01T02:00:18.000+00:00"
    assert [(e["kind"], e["elapsedMs"]) for e in details["events"]] == [("requested", 0.0), ("interrupted", 18_000.0)]
    sweep(24)
    assert [e["kind"] for e in (sweeper.get("d" * 16) or {})["events"]] == ["requested", "interrupted"]  # once
