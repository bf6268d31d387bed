"""The consult log keeps every timestamp, party and outcome, and survives a restart of the server (even SIGKILL)."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

from support import ACCOUNTS, Server

from client.lobby import LobbyClient
from signaling.consult_log import ConsultLog, Party
from signaling.store import connect

UTC = datetime.UTC
T0 = datetime.datetime(2025, 5, 6, 7, 8, 9, 123000, tzinfo=UTC)
CALLER = Party("bs.huyen", "BS. Giàng A Páo", "ttyt-muong-te")
ANSWERER = Party("pgs.tim", "PGS. Nguyễn Văn Tâm", "bv-bach-mai")


def test_a_consult_keeps_every_timestamp_and_party(tmp_path: Path) -> None:
    log = ConsultLog(connect(tmp_path), T0)
    log.requested("a" * 16, T0, CALLER, "lai-chau", "ttyt-muong-te-cc", "tim-mach", "emergency", "Đau ngực", None)
    log.event("a" * 16, T0 + datetime.timedelta(milliseconds=4), 4.25, "ring", ANSWERER, "wave 1")
    answered = T0 + datetime.timedelta(seconds=7, milliseconds=250)
    log.answered("a" * 16, answered, 7250.75, ANSWERER, "consult-" + "a" * 16)
    log.event("a" * 16, answered, None, "invited", Party("bs.ha", "BS. Hà", "bv-nhi-tw"))
    assert log.mark("a" * 16, "joined_at", answered + datetime.timedelta(seconds=3))
    assert not log.mark("a" * 16, "joined_at", answered + datetime.timedelta(seconds=9))  # set once
    assert log.mark("a" * 16, "ended_at", answered + datetime.timedelta(minutes=20))
    consult = log.get("a" * 16)
    assert consult is not None
    assert {k: consult[k] for k in ("requestedAt", "answeredAt", "answerSeconds", "joinedAt", "endedAt", "outcome")} \
        == {"requestedAt": "2025-05-06T07:08:09.123+00:00", "answeredAt": "2025-05-06T07:08:16.373+00:00",
            "answerSeconds": 7.251, "joinedAt": "2025-05-06T07:08:19.373+00:00",
            "endedAt": "2025-05-06T07:28:16.373+00:00", "outcome": "answered"}  # fmt: skip
    assert [(e["kind"], e["username"], e["elapsedMs"]) for e in consult["events"]] == [
        ("requested", "bs.huyen", 0.0), ("ring", "pgs.tim", 4.25), ("accepted", "pgs.tim", 7250.75),
        ("invited", "bs.ha", 7250.0),  # no monotonic reading given: from the wall clocks
    ]  # fmt: skip
    assert log.parties("a" * 16) == {"bs.huyen": "caller", "pgs.tim": "answerer", "bs.ha": "invited"}
    assert log.parties("b" * 16) is None and log.get("b" * 16) is None


def test_open_consults_are_closed_as_interrupted_on_the_next_start(tmp_path: Path) -> None:
    log = ConsultLog(connect(tmp_path), T0)
    log.requested("c" * 16, T0, CALLER, "lai-chau", None, "nhi", "urgent", "Sốt cao", None)
    later = T0 + datetime.timedelta(seconds=30)
    reopened = ConsultLog(connect(tmp_path), later)
    consult = reopened.get("c" * 16)
    assert consult is not None and consult["outcome"] == "interrupted" and consult["closedAt"] == later.isoformat(
        timespec="milliseconds")
    assert consult["events"][-1]["kind"] == "interrupted" and consult["events"][-1]["elapsedMs"] == 30_000.0


async def snapshot(server: Server, ids: list[str]) -> dict[str, Any]:
    """Everything an admin can read about these consults."""
    _, listed = await server.get("/api/consults", user="admin")
    details = {i: (await server.get(f"/api/consults/{i}", user="admin"))[1] for i in ids}
    _, stats = await server.get("/api/statistics?by=specialty", user="admin")
    return {"listed": listed, "details": details, "stats": stats}


async def test_log_and_statistics_survive_a_restart(tmp_path: Path) -> None:
    env = {"HOICHAN_DISPATCH__RING_SECONDS__EMERGENCY": "0.5", "HOICHAN_DISPATCH__RING_SECONDS__ROUTINE": "600"}
    server = Server(tmp_path, env=env)
    server.start()
    try:
        caller = LobbyClient(server.url, await server.login("doctor"), ACCOUNTS["doctor"]["username"])
        doctor = LobbyClient(server.url, await server.login("specialist"), ACCOUNTS["specialist"]["username"])
        await caller.connect()
        await doctor.connect()
        await caller.enter("ttyt-muong-te-cc")
        await doctor.enter(on_duty=True)
        base = {"specialty": "tim-mach", "urgency": "routine", "summary": "Ca"}

        answered = (await caller.call("consult-request", {**base, "summary": "Ca 1"}))["consult"]["id"]
        await doctor.wait(lambda: doctor.my_ring(answered) is not None)
        assert (await doctor.call("consult-accept", {"consult": answered}))["ok"]
        cancelled = (await caller.call("consult-request", {**base, "summary": "Ca 2"}))["consult"]["id"]
        assert (await caller.call("consult-cancel", {"consult": cancelled}))["ok"]
        unanswered = (await caller.call("consult-request", {**base, "summary": "Ca 3", "urgency": "emergency"}))
        unanswered_id = unanswered["consult"]["id"]
        await caller.wait(lambda: (caller.latest(unanswered_id) or {}).get("state") == "unanswered", timeout=10)
        ids = [answered, cancelled, unanswered_id]
        before = await snapshot(server, ids)
        assert [before["details"][i]["outcome"] for i in ids] == ["answered", "cancelled", "unanswered"]
        assert before["stats"]["total"]["count"] == 3 and before["stats"]["total"]["answered"] == 1
        await caller.close()
        await doctor.close()
    finally:
        server.stop()  # a clean restart

    server = Server(tmp_path, env=env)
    server.start()
    try:
        after = await snapshot(server, ids)
        assert after == before
        # a consult still ringing when the server is killed outright: kept, closed as interrupted at the next start
        caller = LobbyClient(server.url, await server.login("doctor"), ACCOUNTS["doctor"]["username"])
        await caller.connect()
        await caller.enter()
        ringing = (await caller.call("consult-request", {"specialty": "nhi", "urgency": "routine",
                                                         "summary": "Trẻ sốt cao co giật"}))["consult"]["id"]  # fmt: skip
        await caller.close()
    finally:
        server.kill()
    server = Server(tmp_path, env=env)
    server.start()
    try:
        final = await snapshot(server, [*ids, ringing])
        assert {i: final["details"][i] for i in ids} == before["details"]
        interrupted = final["details"][ringing]
        assert interrupted["outcome"] == "interrupted" and interrupted["summary"] == "Trẻ sốt cao co giật"
        assert final["stats"]["total"]["count"] == 4 and final["stats"]["total"]["unanswered"] == 2
    finally:
        server.stop()
