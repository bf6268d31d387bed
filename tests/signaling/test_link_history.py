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
