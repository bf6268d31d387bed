"""A recording made by the real relay from aiortc peers (a camera pause, a reconnect: two segments), then found,
exported and combined through the admin API: the contract of docs/recordings.md holds end to end."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import shutil
import subprocess
import zipfile
from typing import Any

import aiohttp
import pytest
from support import PatternVideoTrack, Server, ToneAudioTrack, server_fixture, wait_for

from client.participant import Participant

pytestmark = pytest.mark.skipif(not shutil.which("ffprobe"), reason="ffmpeg is not installed")


recording_server = server_fixture("real", {"HOICHAN_RECORDING__POLICY": "always"})


async def api(server: Server, method: str, path: str, token: str) -> tuple[int, bytes]:
    async with aiohttp.ClientSession() as session:
        async with session.request(method, server.url + path, headers={"Authorization": f"Bearer {token}"}) as r:
            return r.status, await r.read()


def peer(server: Server, name: str) -> Participant:
    return Participant(server.url, "that-cong", name, tracks=[PatternVideoTrack(320, 240), ToneAudioTrack()])


async def test_relay_recording_is_listed_exported_and_combined(recording_server: Server) -> None:
    server = recording_server
    a = peer(server, "BS. A")
    await a.join()
    await asyncio.sleep(1)
    b = peer(server, "BS. B")
    await b.join()
    await wait_for(lambda: (v := a.video_from(b.id)) is not None and v.frames > 10, timeout=15)
    camera = b.tracks["video"]
    assert isinstance(camera, PatternVideoTrack)
    camera.pause(1.5)
    await asyncio.sleep(2)
    await a.restart_media()  # A's second segment
    await wait_for(lambda: (v := b.video_from(a.id)) is not None and v.frames > 10, timeout=15)
    await asyncio.sleep(1)
    await asyncio.gather(a.leave(), b.leave())

    admin = await server.login("admin")
    found: list[dict[str, Any]] = []

    async def complete() -> bool:
        _, body = await api(server, "GET", "/api/recordings", admin)
        found[:] = [r for r in json.loads(body)["recordings"] if r["room_id"] == "that-cong"]
        return bool(found) and found[0]["state"] == "complete"

    for _ in range(100):
        if await complete():
            break
        await asyncio.sleep(0.1)
    assert found and found[0]["state"] == "complete", found
    rid = found[0]["id"]
    status, body = await api(server, "GET", f"/api/recordings/{rid}", admin)
    manifest = json.loads(body)["manifest"]
    files = {t["file"] for t in manifest["tracks"]}
    assert f"{a.id}-video-2.webm" in files and f"{b.id}-video-1.webm" in files

    status, body = await api(server, "GET", f"/api/recordings/{rid}/zip", admin)
    archive = zipfile.ZipFile(io.BytesIO(body))
    for track in manifest["tracks"]:
        assert hashlib.sha256(archive.read(f"{rid}/{track['file']}")).hexdigest() == track["sha256"]

    assert (await api(server, "POST", f"/api/recordings/{rid}/combine", admin))[0] == 202
    job: dict[str, Any] = {}
    for _ in range(600):
        job = json.loads((await api(server, "GET", f"/api/recordings/{rid}", admin))[1])["admin"]["combine"]
        if job["state"] in ("done", "failed"):
            break
        await asyncio.sleep(0.1)
    assert job["state"] == "done" and job["progress"] == 100, job
    combined = server.tmp / "combined.webm"
    combined.write_bytes((await api(server, "GET", f"/api/recordings/{rid}/combined", admin))[1])
    probe = json.loads(subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "format=duration:stream=codec_type,width", "-of", "json",
         str(combined)], check=True, capture_output=True, text=True).stdout)  # fmt: skip
    assert sorted(s["codec_type"] for s in probe["streams"]) == ["audio", "video"]
    longest = max(t["start_offset"] + t["duration"] for t in manifest["tracks"])
    assert float(probe["format"]["duration"]) == pytest.approx(longest, abs=0.3)
