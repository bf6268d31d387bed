"""Scheduled sessions in Redis: the same schedules, occurrences and deletions as the embedded store; of many
processes claiming one occurrence exactly one opens it. Two real signaling processes on one Redis: a schedule made
through one is listed by the other, and its session opens once, each party's page told once, wherever it is
connected. With Redis gone, a scheduled room's join is refused as service-degraded (who may enter cannot be
checked), and schedules are listed again once it is back."""

from __future__ import annotations

import asyncio
import datetime
import threading
from pathlib import Path
from typing import Any

import socketio
from cluster_support import Cluster, PrivateRedis, Scratch, needs_redis, needs_redis_server, scratch  # noqa: F401
from support import Server, wait_for

from cluster.schedules import RedisSchedules
from signaling.schedules.store import ScheduleRecords, ScheduleStore
from signaling.store import connect

pytestmark = needs_redis

UTC = datetime.UTC
WEEKLY = {"title": "Giao ban tim mạch", "kind": "weekly", "weekday": 3, "local_time": datetime.time(14, 30),
          "at": None, "timezone": "Asia/Ho_Chi_Minh", "duration_minutes": 60, "specialty": "tim-mach",
          "accounts": ("pgs.tim",), "facilities": ("ttyt-muong-te",), "created_by": "quantri"}  # fmt: skip
ONCE = {**WEEKLY, "title": "Hội chẩn Mường Tè", "kind": "once", "weekday": None, "local_time": None,
        "at": datetime.datetime(2030, 1, 2, 3, 4, tzinfo=UTC), "specialty": None, "facilities": ()}  # fmt: skip


def exercise(store: ScheduleRecords) -> list[Any]:
    """Everything the scheduler and the routes do with a store, and what they read back (ids and times aside)."""
    weekly, once = store.add(**WEEKLY), store.add(**ONCE)
    start = datetime.datetime(2030, 1, 2, 7, 30, tzinfo=UTC)
    assert once.at is not None
    claims = [store.claim(weekly, start), store.claim(weekly, start), store.claim(once, once.at)]
    seen = [[(s.id == weekly.id, s.title) for s in store.active()], claims]
    seen.append([(o["startsAt"], o["room"] == weekly.room_for(start), sorted(o)) for o in store.opened(weekly.id)])
    seen.append([store.delete(weekly.id), store.delete(weekly.id), store.delete("0123456789")])
    seen.append([s.title for s in store.active()])
    got = store.get(weekly.id)
    assert got is not None and got.deleted and store.get("0123456789") is None
    assert store.get(once.id) == once
    seen.append({**got.__dict__, "id": None, "created_at": None})
    return seen


def test_the_same_answers_as_the_embedded_store(tmp_path: Path, scratch: Scratch) -> None:
    embedded = exercise(ScheduleStore(connect(tmp_path / "store")))
    assert exercise(RedisSchedules(scratch.redis, scratch.keys)) == embedded
    assert embedded[1] == [True, False, True]


def test_one_of_many_processes_opens_an_occurrence(scratch: Scratch) -> None:
    schedule = RedisSchedules(scratch.redis, scratch.keys).add(**ONCE)
    barrier = threading.Barrier(8)
    won: list[int] = []

    def race(n: int) -> None:
        store = RedisSchedules(scratch.redis, scratch.keys)
        barrier.wait()
        if store.claim(schedule, schedule.at):  # type: ignore[arg-type]
            won.append(n)

    threads = [threading.Thread(target=race, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(won) == 1
    assert [o["room"] for o in RedisSchedules(scratch.redis, scratch.keys).opened(schedule.id)] == [
        schedule.room_for(schedule.at)]  # type: ignore[arg-type]


class Page:
    """A signed-in page in no room, on one process: what the scheduler reaches through ``account:<username>``."""

    def __init__(self, server: Server, user: str) -> None:
        self.server, self.user = server, user
        self.sio = socketio.AsyncClient(reconnection=False)
        self.sessions: list[dict[str, Any]] = []
        self.sio.on("scheduled-session", self.sessions.append)

    async def open(self) -> Page:
        token = await self.server.login(self.user)
        await self.sio.connect(self.server.url, transports=["websocket"], auth={"token": token})
        return self


async def test_a_schedule_made_through_one_process_opens_once_across_two(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path, "redis://127.0.0.1:6379/0", extra={"HOICHAN_SCHEDULER__TICK_SECONDS": "0.2"})
    pages: list[Page] = []
    try:
        sig_a, sig_b = cluster.add_signaling(), cluster.add_signaling()
        # the listed specialist on A; the doctor and technician of the listed facility on B; the admin on both
        for server, user in ((sig_a, "specialist"), (sig_b, "doctor"), (sig_b, "technician"), (sig_a, "admin"),
                             (sig_b, "admin")):
            pages.append(await Page(server, user).open())
        at = (datetime.datetime.now(UTC) + datetime.timedelta(seconds=3)).isoformat()
        body = {"title": "Hội chẩn tim mạch", "kind": "once", "at": at, "durationMinutes": 30,
                "accounts": ["pgs.tim"], "facilities": ["ttyt-muong-te"]}  # fmt: skip
        status, made = await sig_a.request("POST", "/api/schedules", token=await sig_a.login("admin"), json=body)
        assert status == 201, made
        schedule_id = made["schedule"]["id"]
        _, listed = await sig_b.get("/api/schedules", user="admin")
        assert [s["title"] for s in listed["schedules"] if s["id"] == schedule_id] == [body["title"]], listed

        await wait_for(lambda: all(len(p.sessions) == 1 for p in pages[:3]), timeout=15)
        await asyncio.sleep(1.5)  # both processes have ticked several times since: still once
        assert [len(p.sessions) for p in pages] == [1, 1, 1, 0, 0]
        rooms = {p.sessions[0]["room"] for p in pages[:3]}
        assert len(rooms) == 1 and next(iter(rooms)).startswith(f"lich-{schedule_id}-")
        for server in (sig_a, sig_b):
            _, listed = await server.get("/api/schedules", user="admin")
            mine = next(s for s in listed["schedules"] if s["id"] == schedule_id)
            assert [o["room"] for o in mine["opened"]] == list(rooms), mine
        _, upcoming = await sig_b.get("/api/schedules/upcoming", user="specialist")
        assert [s["status"] for s in upcoming["sessions"] if s["scheduleId"] == schedule_id] == ["open"]
        token = await sig_b.login("admin")
        assert (await sig_b.request("DELETE", f"/api/schedules/{schedule_id}", token=token))[0] == 200
        _, listed = await sig_a.get("/api/schedules", user="admin")
        assert all(s["id"] != schedule_id for s in listed["schedules"])
        assert (await sig_a.request("DELETE", f"/api/schedules/{schedule_id}",
                                    token=await sig_a.login("admin")))[0] == 404
    finally:
        await asyncio.gather(*(p.sio.disconnect() for p in pages))
        cluster.stop()


@needs_redis_server
async def test_with_redis_gone_a_scheduled_rooms_join_is_refused_as_degraded(tmp_path: Path) -> None:
    private = PrivateRedis(tmp_path / "redis", aof=True)
    (tmp_path / "redis").mkdir()
    private.start()
    cluster = Cluster(tmp_path, private.url)
    try:
        sig = cluster.add_signaling()
        token = await sig.login("specialist")
        at = (datetime.datetime.now(UTC) + datetime.timedelta(days=1)).isoformat()
        status, made = await sig.request("POST", "/api/schedules", token=await sig.login("admin"),
                                         json={"title": "Giao ban", "kind": "once", "at": at, "accounts": ["pgs.tim"]})
        assert status == 201, made
        room = f"lich-{made['schedule']['id']}-203001010000"
        private.stop()
        client = socketio.AsyncClient(reconnection=False)
        await client.connect(sig.url, transports=["websocket"], auth={"token": token})
        try:
            ack = await client.call("join", {"room": room}, timeout=10)
        finally:
            await client.disconnect()
        assert not ack["ok"] and ack["error"]["code"] == "service-degraded", ack
        private.start()
        await asyncio.sleep(1.1)  # the records' breaker lets commands through again
        status, listed = await sig.get("/api/schedules", user="admin")
        assert status == 200 and [s["id"] for s in listed["schedules"]] == [made["schedule"]["id"]], listed
    finally:
        cluster.stop()
        private.stop()
