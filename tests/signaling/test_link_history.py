"""A room's link-quality timeline is kept with its record: after the call, after a restart, and only for those who
may see it."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp
from support import PatternVideoTrack, Server, ToneAudioTrack, wait_for

from client.participant import Participant


async def fetch(server: Server, room: str, token: str | None) -> tuple[int, dict[str, Any]]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession() as http, http.get(
        f"{server.url}/api/rooms/{room}/link-history", headers=headers
    ) as response:
        return response.status, await response.json()


async def test_timeline_kept_after_the_call_and_a_restart_for_those_allowed(tmp_path: Path) -> None:
    server = Server(tmp_path)
    server.start()
    try:
        doctor, specialist = await server.login("doctor"), await server.login("specialist")
        peers = [
            Participant(server.url, "lh1", "A", tracks=[PatternVideoTrack(320, 240), ToneAudioTrack()], token=token)
            for token in (doctor, specialist)
        ]
        for peer in peers:
            await peer.join()
        await wait_for(lambda: all(peer.received for peer in peers), timeout=10)
        admin = await server.login("admin")
        deadline = time.monotonic() + 30  # three or more 2-second samples each, kept during the call too
        while True:
            status, live = await fetch(server, "lh1", admin)
            if status == 200 and len(live["participants"]) == 2 and all(
                len(person["samples"]) >= 3 for person in live["participants"]
            ):
                break
            assert time.monotonic() < deadline, live
            await asyncio.sleep(0.5)
        for peer in peers:
            await peer.leave()
        await asyncio.sleep(0.5)
        status, after = await fetch(server, "lh1", await server.login("admin"))
        assert status == 200
        people = {person["participantId"]: person for person in after["participants"]}
        assert set(people) == {peer.id for peer in peers}
        for person in people.values():
            samples = person["samples"]
            assert len(samples) >= 3
            assert [s["at"] for s in samples] == sorted(s["at"] for s in samples)
            assert all(s["grade"] in ("excellent", "good", "poor", "lost") and 1 <= s["mos"] <= 4.5 for s in samples)
            assert abs(sum(person["gradeShare"].values()) - 1) < 0.01
            assert any(s["recvKbps"] > 50 for s in samples)  # media flowed and was measured
        assert {p["username"] for p in people.values()} == {"bs.huyen", "pgs.tim"}

        # who may look: admins, a technician of a facility that took part, the doctors who took part
        assert (await fetch(server, "lh1", await server.login("technician")))[0] == 200  # ttyt-muong-te took part
        assert (await fetch(server, "lh1", doctor))[0] == 200
        assert (await fetch(server, "lh1", None))[0] == 401
        assert (await fetch(server, "unknown-room", await server.login("admin")))[0] == 404

        server.stop()
        server.start()
        status, restarted = await fetch(server, "lh1", await server.login("admin"))
        assert status == 200 and restarted["participants"] == after["participants"]
    finally:
        server.stop()


async def test_others_cannot_see_a_room_they_took_no_part_in(tmp_path: Path) -> None:
    server = Server(tmp_path)
    server.start()
    try:
        peer = Participant(server.url, "lh2", "A", tracks=[ToneAudioTrack()], token=await server.login("specialist"))
        await peer.join()
        admin = await server.login("admin")
        deadline = time.monotonic() + 20  # the first sample comes 2 s after media is up (later on a loaded machine)
        while (await fetch(server, "lh2", admin))[0] != 200:
            assert time.monotonic() < deadline, "no link-quality sample was kept"
            await asyncio.sleep(0.5)
        await peer.leave()
        for outsider in ("doctor", "technician"):  # another doctor; a technician of a facility not in the room
            status, body = await fetch(server, "lh2", await server.login(outsider))
            assert status == 404 and body["error"]["code"] == "not-found"
    finally:
        server.stop()


def test_adaptation_is_kept_with_each_sample_and_an_older_store_gains_the_column(tmp_path: Path) -> None:
    from signaling.auth import Identity
    from signaling.link_history import LinkHistory, SqliteSamples
    from signaling.rooms import RoomRegistry
    from signaling.store import connect

    db = connect(tmp_path)
    db.execute("CREATE TABLE link_samples (room_id TEXT NOT NULL, participant_id TEXT NOT NULL, username TEXT, "
               "name TEXT NOT NULL, facility TEXT NOT NULL, at REAL NOT NULL, grade TEXT NOT NULL, mos REAL NOT NULL, "
               "rtt_ms REAL, jitter_ms REAL, loss_up REAL, loss_down REAL, send_kbps REAL NOT NULL, "
               "recv_kbps REAL NOT NULL)")  # as stores made before adaptation was kept
    history = LinkHistory(SqliteSamples(db))
    participant = RoomRegistry.new("r1", "A", "ttyt-muong-te", Identity("bs.huyen", "doctor", "ttyt-muong-te"))
    adaptation = {"audioOnly": True, "uplinkCapKbps": 300, "downlinkCapKbps": None,
                  "videos": {"p2": {"layer": None, "paused": True, "reason": "audio-only"}}}
    base = {"grade": "good", "mos": 4.0, "rttMs": 20.0, "jitterMs": 2.0, "lossUp": 0.0, "lossDown": 0.0,
            "sendKbps": 40.0, "recvKbps": 20.0}
    history.add(participant, {**base, "at": 1.0, "adaptation": adaptation})
    history.add(participant, {**base, "at": 2.0})  # a sample from an older media node carries none
    samples = history.timeline("r1")[0]["samples"]
    assert [s["adaptation"] for s in samples] == [adaptation, None]
