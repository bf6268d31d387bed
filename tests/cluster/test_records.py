"""The durable records of a cluster are one set, in Redis (real processes, real Redis): a consult made through one
signaling process is in the log, the statistics and the CSV read through the other; an audit entry written by one
process's recording download is listed by the other; a link test run through one is in the other's /api/points,
and its rate limit holds there, and so do a point's caps; an image shared through one is listed and served by the other; all of it survives restarting both processes. With Redis unreachable, reading or
writing a record answers service-degraded at once, and nothing written before is lost; with the append-only file,
the records survive Redis itself being killed and restarted."""

from __future__ import annotations

import asyncio
import csv
import io
import signal
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis
from cluster_support import Balancer, Cluster, PrivateRedis, needs_redis, needs_redis_server
from recordings_support import RecordingMaker, make_clips
from sharing_support import jpeg_bytes
from support import ACCOUNTS, PatternVideoTrack, Server, ToneAudioTrack

from client.linktest import LinkTestError, LinkTestSession
from client.lobby import LobbyClient
from client.participant import Participant

pytestmark = needs_redis

CARDIOLOGY = {"specialty": "tim-mach", "urgency": "routine", "summary": "Nam 58 tuổi, đau ngực trái 2 giờ."}
POINT = "ttyt-muong-te-hc1"  # the technician's facility's
SHORT_LINKTEST = {
    "HOICHAN_LINKTEST__PING_SECONDS": "1",
    "HOICHAN_LINKTEST__MAX_KBPS": "400",
    "HOICHAN_LINKTEST__CONNECT_TIMEOUT_SECONDS": "5",
    "HOICHAN_LINKTEST__MIN_INTERVAL_SECONDS": "600",
}


async def open_lobby(server: Server, alias: str, on_duty: bool | None = None) -> LobbyClient:
    client = LobbyClient(server.url, await server.login(alias), ACCOUNTS[alias]["username"])
    await client.connect()
    await client.enter(on_duty=on_duty)
    return client


async def answered_consult(requested_on: Server, answered_on: Server) -> str:
    """A consult requested by the district doctor on one process, accepted by the specialist on the other."""
    caller = await open_lobby(requested_on, "doctor")
    specialist = await open_lobby(answered_on, "specialist", on_duty=True)
    try:
        answer = await caller.call("consult-request", CARDIOLOGY)
        assert answer["ok"], answer
        consult_id: str = answer["consult"]["id"]
        await specialist.wait(lambda: (specialist.my_ring(consult_id) or {}).get("status") == "ringing")
        accepted = await specialist.call("consult-accept", {"consult": consult_id})
        assert accepted["ok"], accepted
        return consult_id
    finally:
        await specialist.call("duty", {"onDuty": False})
        await caller.close()
        await specialist.close()


async def download(server: Server, path: str) -> int:
    token = await server.login("admin")
    async with aiohttp.ClientSession() as http, http.get(server.url + path,
                                                         headers={"Authorization": f"Bearer {token}"}) as response:
        await response.read()
        return response.status


async def records_seen_by(server: Server, consult_id: str, recording_id: str, test_id: str) -> None:
    """Everything the other process wrote is there, through this one."""
    status, listed = await server.get("/api/consults", user="admin")
    assert status == 200, listed
    mine = [c for c in listed["consults"] if c["id"] == consult_id]
    assert len(mine) == 1 and mine[0]["outcome"] == "answered", listed
    assert mine[0]["answeredBy"]["username"] == ACCOUNTS["specialist"]["username"]
    _, details = await server.get(f"/api/consults/{consult_id}", user="admin")
    assert [e["kind"] for e in details["events"]][:3] == ["requested", "ring", "accepted"], details
    _, stats = await server.get("/api/statistics?by=specialty", user="admin")
    assert stats["total"]["count"] == 1 and stats["total"]["answered"] == 1, stats
    assert stats["groups"][0]["key"] == "tim-mach" and stats["total"]["medianAnswerSeconds"] == \
        mine[0]["answerSeconds"]
    _, text = await server.get("/api/consults.csv", user="admin")
    rows = list(csv.DictReader(io.StringIO(text.removeprefix("\ufeff"))))
    assert [(r["id"], r["outcome"]) for r in rows] == [(consult_id, "answered")] and int(rows[0]["rings"]) >= 1
    _, audit = await server.get(f"/api/audit?recording={recording_id}", user="admin")
    assert [(e["action"], e["status"], e["actor"]) for e in audit["entries"]][-1:] == [
        ("track", 200, ACCOUNTS["admin"]["username"])], audit
    _, points = await server.get("/api/points", user="technician")
    point = next(p for p in points["points"] if p["id"] == POINT)
    assert point["last"] is not None and point["last"]["id"] == test_id, point
    _, history = await server.get(f"/api/points/{POINT}/link-tests", user="technician")
    assert [r["id"] for r in history["tests"]] == [test_id], history
    _, caps = await server.get(f"/api/points/{POINT}/caps", user="technician")
    assert caps["caps"]["uplinkKbps"] == 300 and caps["caps"]["audioOnly"] is True, caps


async def test_records_written_through_one_process_are_read_through_the_other_and_survive_restarts(
    tmp_path: Path,
) -> None:
    cluster = Cluster(tmp_path, "redis://127.0.0.1:6379/0", extra=SHORT_LINKTEST)
    try:
        sig_a, sig_b = cluster.add_signaling(), cluster.add_signaling()
        cluster.add_node("node-a")
        await cluster.registered("node-a")
        consult_id = await answered_consult(sig_a, sig_b)

        clips = tmp_path / "clips"
        clips.mkdir()
        maker = RecordingMaker(tmp_path / "recordings", make_clips(clips))
        recording_id = maker.make()
        track = maker.track(recording_id)
        assert await download(sig_a, f"/api/recordings/{recording_id}/tracks/{track}") == 200

        session = LinkTestSession(sig_a.url, POINT, await sig_a.login("technician"))
        result = await session.run(timeout=60)
        assert result["status"] in ("complete", "partial") and result["pointId"] == POINT, result
        try:  # the rate limit reads the same history on the other process
            await LinkTestSession(sig_b.url, POINT, await sig_b.login("technician")).run(timeout=20)
            raise AssertionError("a second test of the point through the other process went ahead")
        except LinkTestError as exc:
            assert exc.code == "rate-limited", exc

        status, caps = await sig_a.request("PUT", f"/api/points/{POINT}/caps", token=await sig_a.login("technician"),
                                           json={"uplinkKbps": 300, "audioOnly": True})
        assert status == 200, caps
        await records_seen_by(sig_b, consult_id, recording_id, result["id"])
        for server in (sig_a, sig_b):
            server.stop()
        for server in (sig_a, sig_b):
            server.start()
        await records_seen_by(sig_a, consult_id, recording_id, result["id"])
        await records_seen_by(sig_b, consult_id, recording_id, result["id"])
    finally:
        cluster.stop()


class Port:
    """What ``Balancer`` forwards to: the shared Redis."""

    port = 6379


async def timed(server: Server, path: str, user: str) -> tuple[int, Any, float]:
    started = time.monotonic()
    status, body = await server.get(path, user=user)
    return status, body, time.monotonic() - started


async def test_with_redis_unreachable_records_answer_service_degraded_and_none_is_lost(tmp_path: Path) -> None:
    proxy = Balancer([Port()])  # type: ignore[list-item]  # the processes reach Redis only through it
    await proxy.start()
    cluster = Cluster(tmp_path, f"redis://127.0.0.1:{proxy.port}/0")
    try:
        sig_a, sig_b = cluster.add_signaling(), cluster.add_signaling()
        consult_id = await answered_consult(sig_a, sig_b)
        clips = tmp_path / "clips"
        clips.mkdir()
        maker = RecordingMaker(tmp_path / "recordings", make_clips(clips))
        recording_id = maker.make()
        assert await download(sig_b, f"/api/recordings/{recording_id}") == 200
        await proxy.close()  # Redis unreachable

        for server in (sig_a, sig_b):
            status, body, took = await timed(server, "/api/consults", "admin")
            assert status == 503 and body["error"]["code"] == "service-degraded", body
            assert took < 3, took  # a second's connect timeout, never a hang
            status, body, took = await timed(server, f"/api/recordings/{recording_id}", "admin")
            assert status == 503 and body["error"]["code"] == "service-degraded" and took < 3, (body, took)
            status, body, _ = await timed(server, "/api/points", "technician")
            assert status == 503 and body["error"]["code"] == "service-degraded", body

        await proxy.start()  # Redis back: what was written before is all there, through either process
        for server in (sig_a, sig_b):
            deadline = time.monotonic() + 10
            while (listed := await server.get("/api/consults", user="admin"))[0] != 200:
                assert time.monotonic() < deadline, listed
                await asyncio.sleep(0.2)
            assert [c["id"] for c in listed[1]["consults"]] == [consult_id]
            _, audit = await server.get(f"/api/audit?recording={recording_id}", user="admin")
            assert [(e["action"], e["status"]) for e in audit["entries"]] == [("view", 200)], audit
    finally:
        cluster.stop()
        await proxy.close()


async def listed_consults(server: Server, timeout: float = 15) -> list[str]:
    """The consult ids the log lists, once the process reaches Redis again."""
    deadline = time.monotonic() + timeout
    while (listed := await server.get("/api/consults", user="admin"))[0] != 200:
        assert time.monotonic() < deadline, listed
        await asyncio.sleep(0.2)
    return [c["id"] for c in listed[1]["consults"]]


@needs_redis_server
async def test_with_the_append_only_file_records_survive_redis_killed_and_restarted(tmp_path: Path) -> None:
    (tmp_path / "redis").mkdir()
    private = PrivateRedis(tmp_path / "redis", aof=True)
    private.start()
    cluster = Cluster(tmp_path, private.url)
    try:
        sig_a, sig_b = cluster.add_signaling(), cluster.add_signaling()
        first = await answered_consult(sig_a, sig_b)
        second = await answered_consult(sig_b, sig_a)
        assert await listed_consults(sig_a) == [second, first]
        private.stop()  # SIGKILL: no chance to save anything on the way out
        private.start()
        for server in (sig_a, sig_b):
            assert await listed_consults(server) == [second, first]
            _, details = await server.get(f"/api/consults/{first}", user="admin")
            assert details["outcome"] == "answered" and [e["kind"] for e in details["events"]][:3] == [
                "requested", "ring", "accepted"], details
        # The cluster goes on writing. A ring sent in the first seconds after the restart can be lost while
        # socket.io's Redis manager resubscribes (its own back-off); that consult stays in the log, unanswered.
        deadline = time.monotonic() + 60
        while True:
            try:
                third = await answered_consult(sig_a, sig_b)
                break
            except TimeoutError:
                assert time.monotonic() < deadline, "no consult could be answered after Redis came back"
        listed = await listed_consults(sig_b)
        assert listed[0] == third and listed[-2:] == [second, first], listed
    finally:
        cluster.stop()
        private.stop()


async def test_an_image_shared_through_one_process_is_listed_and_served_by_the_other(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path, "redis://127.0.0.1:6379/0",
                      extra={"HOICHAN_SHARING__DIRECTORY": str(tmp_path / "shared")})  # one filesystem for both
    doctor = specialist = None
    try:
        sig_a, sig_b = cluster.add_signaling(), cluster.add_signaling()
        cluster.add_node("node-a")
        await cluster.registered("node-a")
        doctor = Participant(sig_a.url, "share-span", "BS", tracks=[PatternVideoTrack(), ToneAudioTrack()],
                             token=await sig_a.login("doctor"))
        specialist = Participant(sig_b.url, "share-span", "PGS", tracks=[PatternVideoTrack(), ToneAudioTrack()],
                                 token=await sig_b.login("specialist"))
        await doctor.join()
        await specialist.join()
        form = aiohttp.FormData()
        form.add_field("image", jpeg_bytes(), filename="xquang.jpg", content_type="image/jpeg")
        form.add_field("caption", "Phim X-quang ngực")
        async with aiohttp.ClientSession() as http, http.post(
            f"{sig_a.url}/api/rooms/share-span/shared/images", data=form,
            headers={"Authorization": f"Bearer {await sig_a.login('doctor')}"},
        ) as response:
            assert response.status == 201, await response.text()
            item = (await response.json())["item"]
        await doctor.leave()
        await specialist.leave()
        doctor = specialist = None
        # after the call, through the other process: the doctor (who joined on A) may see the room's record on B
        for user in ("doctor", "specialist"):
            status, listed = await sig_b.get("/api/rooms/share-span/shared", user=user)
            assert status == 200 and [i["id"] for i in listed["items"]] == [item["id"]], listed
            assert listed["items"][0]["data"]["caption"] == "Phim X-quang ngực"
        images = []
        for server in (sig_a, sig_b):
            token = await server.login("doctor")
            async with aiohttp.ClientSession() as http, http.get(
                server.url + item["data"]["url"], headers={"Authorization": f"Bearer {token}"}) as response:
                assert response.status == 200 and response.content_type == "image/jpeg"
                images.append(await response.read())
        assert images[0] == images[1] and images[0][:2] == b"\xff\xd8"
        status, _ = await sig_b.get("/api/rooms/share-span/shared", user="specialist2")  # never attended
        assert status == 403
    finally:
        for peer in (doctor, specialist):
            if peer is not None:
                await peer.leave()
        cluster.stop()


@needs_redis_server
async def test_a_full_redis_refuses_new_records_as_service_degraded_and_keeps_the_old(tmp_path: Path) -> None:
    (tmp_path / "redis").mkdir()
    private = PrivateRedis(tmp_path / "redis", options=("--maxmemory-policy", "noeviction"))
    private.start()
    cluster = Cluster(tmp_path, private.url)
    admin = cluster.redis()
    try:
        sig_a, sig_b = cluster.add_signaling(), cluster.add_signaling()
        consult_id = await answered_consult(sig_a, sig_b)
        clips = tmp_path / "clips"
        clips.mkdir()
        maker = RecordingMaker(tmp_path / "recordings", make_clips(clips))
        recording_id = maker.make()
        assert await download(sig_a, f"/api/recordings/{recording_id}") == 200
        used = int(admin.info("memory")["used_memory"])
        admin.config_set("maxmemory", used // 2)  # full: well over its limit, whatever expires meanwhile
        with pytest.raises(redis.exceptions.OutOfMemoryError):
            admin.set(f"{cluster.prefix}probe", "x")
        status, body, _ = await timed(sig_b, f"/api/recordings/{recording_id}", "admin")  # cannot be audited
        assert status == 503 and body["error"]["code"] == "service-degraded" and "full" in body["error"]["message"]
        assert await listed_consults(sig_b) == [consult_id]  # reading goes on
        admin.config_set("maxmemory", 0)
        assert await download(sig_b, f"/api/recordings/{recording_id}") == 200
        _, audit = await sig_a.get(f"/api/audit?recording={recording_id}", user="admin")
        assert [(e["action"], e["status"]) for e in audit["entries"]] == [("view", 200), ("view", 200)], audit
    finally:
        admin.close()
        cluster.stop()
        private.stop()


@needs_redis_server
async def test_a_hung_redis_holds_a_process_for_one_timeout_then_records_fail_at_once(tmp_path: Path) -> None:
    (tmp_path / "redis").mkdir()
    private = PrivateRedis(tmp_path / "redis")
    private.start()
    cluster = Cluster(tmp_path, private.url)
    try:
        sig_a, sig_b = cluster.add_signaling(), cluster.add_signaling()
        consult_id = await answered_consult(sig_a, sig_b)
        assert private.proc is not None
        private.proc.send_signal(signal.SIGSTOP)  # Redis hangs: connections are taken, nothing answers
        try:
            status, body, took = await timed(sig_a, "/api/consults", "admin")
            assert status == 503 and body["error"]["code"] == "service-degraded" and took < 3.5, (body, took)
            for _ in range(5):  # the breaker is open: the next requests do not wait
                status, body, took = await timed(sig_a, "/api/consults", "admin")
                assert status == 503 and took < 0.5, (body, took)
                started = time.monotonic()
                assert (await sig_a.get("/healthz"))[0] == 200 and time.monotonic() - started < 0.5
        finally:
            private.proc.send_signal(signal.SIGCONT)
        assert await listed_consults(sig_a) == [consult_id]  # back after the pause, nothing lost
    finally:
        cluster.stop()
        private.stop()


async def test_a_consult_whose_process_is_killed_while_it_rings_is_closed_as_interrupted(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path, "redis://127.0.0.1:6379/0", extra={"HOICHAN_DISPATCH__RING_SECONDS__ROUTINE": "600"})
    try:
        sig_a, sig_b = cluster.add_signaling(), cluster.add_signaling()
        caller = await open_lobby(sig_a, "doctor")
        answer = await caller.call("consult-request", CARDIOLOGY)
        assert answer["ok"], answer
        consult_id = answer["consult"]["id"]
        await caller.close()
        sig_a.kill()  # SIGKILL: it can close nothing itself
        killed = time.monotonic()
        while True:  # node_timeout 2 s: the key lapses in 2 s, sweeps every 6 s, two sweeps missing it
            _, details = await sig_b.get(f"/api/consults/{consult_id}", user="admin")
            if details["outcome"] == "interrupted":
                break
            assert details["outcome"] == "open", details
            assert time.monotonic() - killed < 25, "the consult of the killed process is still open"
            await asyncio.sleep(0.5)
        print(f"interrupted {time.monotonic() - killed:.1f} s after the SIGKILL")
        assert [e["kind"] for e in details["events"]][-1] == "interrupted"
        _, stats = await sig_b.get("/api/statistics", user="admin")
        assert stats["total"]["open"] == 0 and stats["total"]["unanswered"] == 1, stats
    finally:
        cluster.stop()
