"""Scheduled sessions against a real server: a one-off session opens on time and reaches its parties' open pages,
once only even across a restart; its room admits only its parties; admins alone create schedules, bad ones are
refused with nothing stored."""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import socketio
from support import Server, server_fixture, wait_for

UTC = datetime.UTC
VIETNAM = datetime.timezone(datetime.timedelta(hours=7))
# Weekly schedules in these tests fall three days from today: one due today would open while a test reads the list
AWAY = (datetime.datetime.now(VIETNAM) + datetime.timedelta(days=3)).isoweekday()
server = server_fixture("schedules", {"HOICHAN_SCHEDULER__TICK_SECONDS": "0.2"})


class Page:
    """A signed-in page that is open but in no room (a lobby): what the scheduler can reach."""

    def __init__(self, server: Server, user: str) -> None:
        self.server, self.user = server, user
        self.sio = socketio.AsyncClient(reconnection=False)
        self.sessions: list[dict[str, Any]] = []
        self.sio.on("scheduled-session", self.sessions.append)

    async def open(self) -> Page:
        await self.sio.connect(self.server.url, transports=["websocket"], auth={"token": await self.server.login(self.user)})
        return self


@pytest.fixture
async def pages(server: Server) -> AsyncIterator[dict[str, Page]]:
    opened = {user: await Page(server, user).open() for user in ("doctor", "specialist", "technician", "admin")}
    yield opened
    await asyncio.gather(*(p.sio.disconnect() for p in opened.values()))


def soon(seconds: float) -> str:
    return (datetime.datetime.now(UTC) + datetime.timedelta(seconds=seconds)).isoformat()


async def create(server: Server, body: dict[str, Any], user: str = "admin") -> tuple[int, Any]:
    return await server.request("POST", "/api/schedules", token=await server.login(user), json=body)


async def join(server: Server, room: str, user: str | None) -> dict[str, Any]:
    """The join ack for ``user`` (None: a guest)."""
    token = await server.login(user) if user is not None else None
    sio = socketio.AsyncClient(reconnection=False)
    await sio.connect(server.url, transports=["websocket"], auth={"token": token} if token else None)
    try:
        payload = {"room": room} if user is not None else {"room": room, "name": "Khách"}
        ack: dict[str, Any] = await sio.call("join", payload, timeout=10)
        if ack.get("ok"):
            await sio.call("leave", {}, timeout=10)
        return ack
    finally:
        await sio.disconnect()


async def test_a_one_off_session_opens_on_time_and_notifies_its_parties(
    server: Server, pages: dict[str, Page]
) -> None:
    body = {"title": "Hội chẩn tim mạch", "kind": "once", "at": soon(2), "durationMinutes": 30,
            "specialty": "tim-mach", "accounts": ["pgs.tim"], "facilities": ["ttyt-muong-te"]}  # fmt: skip
    status, answer = await create(server, body)
    assert status == 201, answer
    schedule = answer["schedule"]
    assert schedule["nextAt"] is not None and schedule["opened"] == []
    # the specialist (listed), the district doctor and technician (their facility is listed); not the admin
    for user in ("specialist", "doctor", "technician"):
        await wait_for(lambda user=user: len(pages[user].sessions) == 1, timeout=10)
    session = pages["doctor"].sessions[0]
    assert session["scheduleId"] == schedule["id"] and session["status"] == "open"
    assert session["room"].startswith(f"lich-{schedule['id']}-") and session["url"] == f"/room/{session['room']}"
    assert datetime.datetime.fromisoformat(session["startsAt"]) == datetime.datetime.fromisoformat(body["at"])
    await asyncio.sleep(1)  # five more ticks: still once
    assert [len(pages[u].sessions) for u in ("specialist", "doctor", "technician", "admin")] == [1, 1, 1, 0]
    _, listed = await server.get("/api/schedules", user="admin")
    mine = next(s for s in listed["schedules"] if s["id"] == schedule["id"])
    assert [o["room"] for o in mine["opened"]] == [session["room"]] and mine["nextAt"] is None
    # the room: its parties and admins join; a guest does not
    for user in ("specialist", "doctor", "admin"):
        assert (await join(server, session["room"], user))["ok"], user
    ack = await join(server, session["room"], None)
    assert not ack["ok"] and ack["error"]["code"] == "unauthorized"
    # open now: in the parties' list of sessions, with its link
    _, upcoming = await server.get("/api/schedules/upcoming", user="technician")
    assert [(s["room"], s["status"]) for s in upcoming["sessions"] if s["scheduleId"] == schedule["id"]] == [
        (session["room"], "open")]


async def test_a_scheduled_room_is_closed_to_accounts_that_are_not_its_parties(server: Server) -> None:
    # a facility of the directory that has no account yet is still a valid party
    body = {"title": "Giao ban", "kind": "weekly", "weekday": AWAY, "time": "08:00", "accounts": ["pgs.tim"],
            "facilities": ["so-y-te-lai-chau"]}  # fmt: skip
    status, answer = await create(server, body)
    assert status == 201, answer
    room = f"lich-{answer['schedule']['id']}-202612010800"
    ack = await join(server, room, "doctor")
    assert not ack["ok"] and ack["error"]["code"] == "forbidden"
    assert (await join(server, room, "specialist"))["ok"]
    # a room that only looks like a scheduled one (no such schedule) is an ordinary room
    assert (await join(server, "lich-0123456789-202612010800", "doctor"))["ok"]
    # an ordinary room is still open to anyone with the link, guests included
    assert (await join(server, "ad-hoc-room", None))["ok"]


async def test_weekly_sessions_are_listed_to_their_parties(server: Server) -> None:
    body = {"title": "Hằng tuần", "kind": "weekly", "weekday": AWAY, "time": "08:00",
            "timezone": "Asia/Ho_Chi_Minh", "facilities": ["bv-bach-mai"]}  # fmt: skip
    status, answer = await create(server, body)
    assert status == 201
    schedule_id = answer["schedule"]["id"]
    next_at = datetime.datetime.fromisoformat(answer["schedule"]["nextAt"])
    local = next_at.astimezone(VIETNAM)
    assert (local.isoweekday(), local.hour, local.minute) == (AWAY, 8, 0)
    _, upcoming = await server.get("/api/schedules/upcoming", user="specialist")
    starts = [datetime.datetime.fromisoformat(s["startsAt"]) for s in upcoming["sessions"]
              if s["scheduleId"] == schedule_id]  # fmt: skip
    assert starts == [next_at, next_at + datetime.timedelta(days=7)]  # 14 days ahead: two occurrences
    _, upcoming = await server.get("/api/schedules/upcoming", user="doctor")  # another facility
    assert all(s["scheduleId"] != schedule_id for s in upcoming["sessions"])
    _, upcoming = await server.get("/api/schedules/upcoming", user="admin")
    assert any(s["scheduleId"] == schedule_id for s in upcoming["sessions"])
    # deleted: gone from lists, and no longer opens
    token = await server.login("admin")
    assert (await server.request("DELETE", f"/api/schedules/{schedule_id}", token=token))[0] == 200
    assert (await server.request("DELETE", f"/api/schedules/{schedule_id}", token=token))[0] == 404
    _, listed = await server.get("/api/schedules", user="admin")
    assert all(s["id"] != schedule_id for s in listed["schedules"])


GOOD = {"title": "Hội chẩn", "kind": "weekly", "weekday": AWAY, "time": "08:00", "accounts": ["pgs.tim"]}


@pytest.mark.parametrize(
    ("change", "code", "says"),
    [
        ({"accounts": ["khong.co"]}, "unknown-account", "khong.co"),
        ({"accounts": [], "facilities": ["bv-khong-co"]}, "unknown-facility", "bv-khong-co"),
        ({"accounts": []}, "invalid-payload", "at least one party"),
        ({"specialty": "phep-thuat"}, "unknown-specialty", "phep-thuat"),
        ({"time": "25:00"}, "invalid-payload", "time"),
        ({"time": "8h"}, "invalid-payload", "time"),
        ({"weekday": 8}, "invalid-payload", "weekday"),
        ({"weekday": "2"}, "invalid-payload", "weekday"),
        ({"weekday": None}, "invalid-payload", "weekday"),
        ({"timezone": "Asia/Sai_Gon"}, "invalid-payload", "timezone"),
        ({"kind": "once", "weekday": None, "time": None, "at": "2020-01-01T08:00+07:00"}, "invalid-payload", "passed"),
        ({"kind": "once", "weekday": None, "time": None, "at": "ngày mai"}, "invalid-payload", "at"),
        ({"kind": "once", "weekday": None, "time": None}, "invalid-payload", "at"),
        ({"kind": "daily"}, "invalid-payload", "kind"),
        ({"durationMinutes": 0}, "invalid-payload", "durationMinutes"),
        ({"title": ""}, "invalid-payload", "title"),
        ({"room": "chosen-by-client"}, "invalid-payload", "room"),
    ],
)
async def test_bad_schedules_are_refused_and_nothing_is_stored(
    server: Server, change: dict[str, Any], code: str, says: str
) -> None:
    _, before = await server.get("/api/schedules", user="admin")
    status, answer = await create(server, {**GOOD, **change})
    assert (status, answer["error"]["code"]) == (400, code) and says in answer["error"]["message"], answer
    _, after = await server.get("/api/schedules", user="admin")
    assert after == before


@pytest.mark.parametrize(("user", "status"), [("doctor", 403), ("technician", 403), ("specialist", 403)])
async def test_only_admins_create_list_and_delete_schedules(server: Server, user: str, status: int) -> None:
    token = await server.login(user)
    assert (await server.request("POST", "/api/schedules", token=token, json=GOOD))[0] == status
    assert (await server.request("GET", "/api/schedules", token=token))[0] == status
    _, created = await create(server, GOOD)
    path = f"/api/schedules/{created['schedule']['id']}"
    assert (await server.request("DELETE", path, token=token))[0] == status
    assert (await server.request("POST", "/api/schedules", json=GOOD))[0] == 401
    assert (await server.request("GET", "/api/schedules/upcoming"))[0] == 401


async def test_a_session_opens_once_only_across_a_restart_and_late_if_missed(tmp_path: Path) -> None:
    srv = Server(tmp_path, env={"HOICHAN_SCHEDULER__TICK_SECONDS": "0.2"})
    srv.start()
    try:
        doctor = await Page(srv, "doctor").open()
        _, answer = await create(srv, {**GOOD, "kind": "once", "weekday": None, "time": None, "at": soon(1.5),
                                       "accounts": ["bs.huyen"]})  # fmt: skip
        await wait_for(lambda: len(doctor.sessions) == 1, timeout=10)
        room = doctor.sessions[0]["room"]
        # due while the server is down: it opens late, after the restart
        _, missed = await create(srv, {**GOOD, "kind": "once", "weekday": None, "time": None, "at": soon(2),
                                       "accounts": ["bs.huyen"], "title": "Lỡ giờ"})  # fmt: skip
        srv.kill()
        await doctor.sio.disconnect()
        await asyncio.sleep(3)
        srv.start()
        srv._tokens.clear()
        doctor = await Page(srv, "doctor").open()
        deadline = asyncio.get_running_loop().time() + 10  # a loaded machine ticks late: wait for the missed one
        while True:
            _, listed = await srv.get("/api/schedules", user="admin")
            opened = {s["id"]: [o["room"] for o in s["opened"]] for s in listed["schedules"]}
            if opened[missed["schedule"]["id"]] or asyncio.get_running_loop().time() > deadline:
                break
            await asyncio.sleep(0.2)
        await asyncio.sleep(1.0)  # five more ticks after the restart: the first session does not open again
        _, listed = await srv.get("/api/schedules", user="admin")
        opened = {s["id"]: [o["room"] for o in s["opened"]] for s in listed["schedules"]}
        assert all(s["scheduleId"] != answer["schedule"]["id"] for s in doctor.sessions)
        assert opened[answer["schedule"]["id"]] == [room] and len(opened[missed["schedule"]["id"]]) == 1
        # the missed one opened after the restart (pages open by then were told; the others find it listed)
        _, upcoming = await srv.get("/api/schedules/upcoming", user="doctor")
        assert [s["status"] for s in upcoming["sessions"] if s["scheduleId"] == missed["schedule"]["id"]] == ["open"]
        await doctor.sio.disconnect()
    finally:
        srv.stop()
