"""The durable records of a cluster are one set, in Redis (real processes, real Redis): a consult made through one
signaling process is in the log, the statistics and the CSV read through the other; an audit entry written by one
process's recording download is listed by the other; a link test run through one is in the other's /api/points,
and its rate limit holds there, and so do a point's caps; an image shared through one is listed and served by the
other; all of it survives restarting both processes (Redis failing: ``test_records_faults.py``)."""

from __future__ import annotations

import asyncio
import csv
import io
import time
from pathlib import Path

import aiohttp
from cluster_support import Cluster, needs_redis
from consult_support import CARDIOLOGY, answered_consult, download, open_lobby
from recordings_support import RecordingMaker, make_clips
from sharing_support import jpeg_bytes
from support import ACCOUNTS, PatternVideoTrack, Server, ToneAudioTrack

from client.linktest import LinkTestError, LinkTestSession
from client.participant import Participant

pytestmark = needs_redis

POINT = "ttyt-muong-te-hc1"  # the technician's facility's
SHORT_LINKTEST = {
    "HOICHAN_LINKTEST__PING_SECONDS": "1",
    "HOICHAN_LINKTEST__LOSS_SECONDS": "1",
    "HOICHAN_LINKTEST__MAX_KBPS": "400",
    "HOICHAN_LINKTEST__CONNECT_TIMEOUT_SECONDS": "5",
    "HOICHAN_LINKTEST__MIN_INTERVAL_SECONDS": "600",
}


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
