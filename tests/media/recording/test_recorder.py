"""Recordings made by a real server from real aiortc peers, checked with PyAV: codec, duration, decoding, checksums."""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import pytest

from client.participant import Participant
from support import ACCOUNTS, PatternVideoTrack, Server, ToneAudioTrack, server_fixture, wait_for


recording_server = server_fixture("recording", {"HOICHAN_RECORDING__POLICY": "ask"})


def recordings(server: Server) -> Path:
    return server.tmp / "data" / "recordings"


def manifest_of(server: Server, recording_id: str) -> dict[str, Any]:
    return json.loads((recordings(server) / recording_id / "manifest.json").read_text())


def when(stamp: str) -> float:
    return datetime.datetime.fromisoformat(stamp).timestamp()


def decode(path: Path) -> tuple[str, int, list[int]]:
    """Codec name, decoded frame count and the packets' timestamps; decoding errors raise."""
    with av.open(str(path)) as container:
        stream = container.streams[0]
        codec = stream.codec_context.name
        pts: list[int] = []
        frames = 0
        for packet in container.demux(stream):
            if packet.pts is not None:
                pts.append(packet.pts)
            frames += len(packet.decode())
    return codec, frames, pts


def peer(server: Server, room: str, name: str, record: bool | None = None, token: str | None = None) -> Participant:
    return Participant(server.url, room, name, tracks=[PatternVideoTrack(320, 240), ToneAudioTrack()], record=record,
                       token=token)


async def finished(server: Server, recording_id: str) -> dict[str, Any]:
    await wait_for(lambda: manifest_of(server, recording_id)["state"] == "complete", timeout=30)
    return manifest_of(server, recording_id)


async def test_ten_second_consult_is_recorded_without_transcoding(recording_server: Server) -> None:
    doctor = await recording_server.login("doctor")  # only signed-in staff may ask for a recording
    a, b = peer(recording_server, "rec10", "A", record=True, token=doctor), peer(recording_server, "rec10", "B")
    await a.join()
    assert a.recording["active"] is True  # shown from the first second, before media even starts
    await b.join()
    assert b.recording["active"] is True
    await wait_for(lambda: a.recording.get("recordingId") and b.recording.get("recordingId"), timeout=10)
    recording_id = a.recording["recordingId"]
    await asyncio.sleep(10)
    await asyncio.gather(a.leave(), b.leave())
    manifest = await finished(recording_server, recording_id)

    assert manifest["ended_cleanly"] is True and manifest["room_id"] == "rec10"
    assert {p["name"] for p in manifest["participants"]} == {ACCOUNTS["doctor"]["display_name"], "B"}
    assert {p["role"] for p in manifest["participants"]} == {"doctor", "guest"}
    tracks = manifest["tracks"]
    assert sorted((t["participant_id"], t["kind"]) for t in tracks) == sorted(
        (p.id, kind) for p in (a, b) for kind in ("audio", "video"))
    for track in tracks:
        path = recordings(recording_server) / recording_id / track["file"]
        assert hashlib.sha256(path.read_bytes()).hexdigest() == track["sha256"]
        assert path.stat().st_size == track["size"] and track["complete"] is True
        codec, frames, pts = decode(path)
        assert codec == ("vp8" if track["kind"] == "video" else "opus")
        assert pts == sorted(pts) and len(set(pts)) == len(pts)  # strictly monotonic
        participant = next(p for p in manifest["participants"] if p["id"] == track["participant_id"])
        session = participant["sessions"][0]
        real = when(session["left_at"]) - when(manifest["started_at"]) - track["start_offset"]
        assert abs(track["duration"] - real) <= 0.05 * real, (track, real)
        assert frames >= (25 if track["kind"] == "video" else 45) * real
        if track["kind"] == "video":
            assert (track["width"], track["height"]) == (320, 240)
        with av.open(str(path)) as container:  # a clean end writes the duration into the file itself
            assert container.duration is not None


async def test_policy_ask_records_only_when_staff_ask(recording_server: Server) -> None:
    # nobody asks; then a guest opens a room asking for a recording: a guest cannot create a medical record
    for room, record in (("norec", None), ("guest-asks", True)):
        a, b = peer(recording_server, room, "A", record=record), peer(recording_server, room, "B", record=True)
        await a.join()
        await b.join()
        await asyncio.sleep(1)
        assert a.recording == b.recording == {"active": False, "recordingId": None, "error": None}
        await asyncio.gather(a.leave(), b.leave())
        assert not [d for d in recordings(recording_server).iterdir() if f"-{room}-" in d.name]


async def test_rejoin_reconnect_and_muted_camera_keep_timestamps_right(recording_server: Server) -> None:
    doctor = await recording_server.login("doctor")
    a, b = peer(recording_server, "gaps", "A", record=True, token=doctor), peer(recording_server, "gaps", "B")
    await a.join()
    await b.join()
    await wait_for(lambda: a.recording.get("recordingId"), timeout=10)
    recording_id = a.recording["recordingId"]
    await wait_for(lambda: (v := a.video_from(b.id)) is not None and v.frames > 10, timeout=10)
    # B turns the camera off for 3 s
    camera = b.tracks["video"]
    assert isinstance(camera, PatternVideoTrack)
    camera.pause(3)
    await asyncio.sleep(5)
    # A's connection fails and is rebuilt (a new segment); B leaves and comes back (a new participant)
    await a.restart_media()
    await wait_for(lambda: (v := a.video_from(b.id)) is not None and v.frames > 10, timeout=10)
    await b.leave()
    b2 = peer(recording_server, "gaps", "B")
    await b2.join()
    await wait_for(lambda: (v := a.video_from(b2.id)) is not None and v.frames > 30, timeout=10)
    await asyncio.gather(a.leave(), b2.leave())
    manifest = await finished(recording_server, recording_id)

    by_file = {t["file"]: t for t in manifest["tracks"]}
    assert {f"{a.id}-video-1.webm", f"{a.id}-video-2.webm", f"{b.id}-video-1.webm", f"{b2.id}-video-1.webm"} <= set(by_file)
    for track in manifest["tracks"]:
        _, frames, pts = decode(recordings(recording_server) / recording_id / track["file"])
        assert pts == sorted(pts) and len(set(pts)) == len(pts) and frames > 0
    # B's video spans the 3 s without frames: its duration is the time B was there, not the time it sent
    muted = by_file[f"{b.id}-video-1.webm"]
    session = next(p for p in manifest["participants"] if p["id"] == b.id)["sessions"][0]
    real = when(session["left_at"]) - when(manifest["started_at"]) - muted["start_offset"]
    assert abs(muted["duration"] - real) <= 0.05 * real + 0.1, (muted, real)
    _, _, pts = decode(recordings(recording_server) / recording_id / muted["file"])
    assert max(b - a for a, b in zip(pts, pts[1:])) >= 2.8 * 1000  # webm timestamps are in ms
    # segments follow one another on the room's timeline
    assert by_file[f"{a.id}-video-2.webm"]["start_offset"] > by_file[f"{a.id}-video-1.webm"]["start_offset"] + 5
    # the participants' sessions are all closed
    assert all(s["left_at"] for p in manifest["participants"] for s in p["sessions"])


@pytest.fixture
def crash_server(tmp_path: Path) -> Iterator[Server]:
    srv = Server(tmp_path, env={"HOICHAN_RECORDING__POLICY": "always"})
    srv.start()
    yield srv
    srv.stop()


async def test_sigkill_leaves_playable_files_closed_as_unclean_on_restart(crash_server: Server) -> None:
    a, b = peer(crash_server, "crash", "A"), peer(crash_server, "crash", "B")
    await a.join()
    await b.join()
    await wait_for(lambda: a.recording.get("recordingId"), timeout=10)
    recording_id = a.recording["recordingId"]
    await asyncio.sleep(5)
    killed_at = time.time()
    crash_server.kill()
    await asyncio.gather(a.close_media(), b.close_media())
    assert manifest_of(crash_server, recording_id)["state"] == "recording"

    crash_server.start()  # start-up finds the unfinished recording and closes it honestly
    manifest = manifest_of(crash_server, recording_id)
    assert manifest["state"] == "interrupted" and manifest["ended_cleanly"] is False
    assert manifest["end_reason"] == "crash-recovered"
    assert killed_at - 3 <= when(manifest["ended_at"]) <= killed_at + 1
    assert len(manifest["tracks"]) == 4
    for track in manifest["tracks"]:
        path = recordings(crash_server) / recording_id / track["file"]
        codec, frames, pts = decode(path)  # playable up to the last second before the kill
        assert track["complete"] is False and track["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        assert track["duration"] >= 3.0 and frames > 0
    await asyncio.gather(a.sio.disconnect(), b.sio.disconnect())


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 600 KB filesystem for the recordings: it fills up within seconds of a call."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=600k", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


async def test_full_disk_stops_recording_but_not_the_call(tmp_path: Path, tiny_disk: Path) -> None:
    server = Server(tmp_path, env={"HOICHAN_RECORDING__POLICY": "always", "HOICHAN_RECORDING__DIRECTORY": str(tiny_disk)})
    server.start()
    try:
        a, b = (Participant(server.url, "full", n, tracks=[PatternVideoTrack(), ToneAudioTrack()]) for n in "AB")
        await a.join()
        await b.join()
        await wait_for(lambda: a.recording.get("recordingId"), timeout=10)
        recording_id = a.recording["recordingId"]
        # the disk fills: everyone is told, with the reason
        await wait_for(lambda: a.recording.get("active") is False and b.recording.get("active") is False, timeout=30)
        assert "No space" in a.recording["error"] or "disk" in a.recording["error"]
        # the call goes on
        video = a.video_from(b.id)
        assert video is not None
        frames = video.frames
        await wait_for(lambda: video.frames > frames + 30, timeout=5)
        await asyncio.gather(a.leave(), b.leave())
        manifest = json.loads((tiny_disk / recording_id / "manifest.json").read_text())
        await wait_for(lambda: json.loads((tiny_disk / recording_id / "manifest.json").read_text())["state"] == "complete",
                       timeout=30)
        manifest = json.loads((tiny_disk / recording_id / "manifest.json").read_text())
        assert manifest["ended_cleanly"] is False and manifest["errors"]
        for track in manifest["tracks"]:  # what was written before the disk filled stays playable
            codec, frames_decoded, _ = decode(tiny_disk / recording_id / track["file"])
            assert frames_decoded > 0
    finally:
        server.stop()


async def test_h264_publisher_is_recorded_as_received_in_matroska(recording_server: Server) -> None:
    doctor = await recording_server.login("doctor")
    a = Participant(recording_server.url, "rec264", "A", tracks=[PatternVideoTrack(320, 240), ToneAudioTrack()],
                    record=True, token=doctor, video_codec="video/H264")
    await a.join()
    await wait_for(lambda: a.recording.get("recordingId"), timeout=10)
    recording_id = a.recording["recordingId"]
    await asyncio.sleep(4)
    await a.leave()
    manifest = await finished(recording_server, recording_id)

    video = next(t for t in manifest["tracks"] if t["kind"] == "video")
    assert video["codec"] == "H264" and video["file"].endswith(".mkv")
    assert (video["width"], video["height"]) == (320, 240)
    codec, frames, pts = decode(recordings(recording_server) / recording_id / video["file"])
    assert codec == "h264" and pts == sorted(pts)
    assert frames >= 20 * video["duration"] > 0


async def test_a_recording_is_continued_only_if_it_is_an_open_recording_of_that_room(tmp_path: Path) -> None:
    """Cluster failover reopens a recording by id (media/recording/recorder.py ``_reopen``): bad ids change nothing."""
    from media.recording.recorder import RoomRecorder

    async def alert(message: str) -> None:
        pass

    first = RoomRecorder(tmp_path, "ward", {"node_id": "a"}, alert)
    await first.stop()
    elsewhere = RoomRecorder(tmp_path, "other", {"node_id": "a"}, alert)  # open, but another room's
    before = sorted(p.name for p in tmp_path.rglob("*"))
    for bad in ("../../etc", "20261123T000000Z-ward-zzzzzz", elsewhere.id):
        with pytest.raises((ValueError, FileNotFoundError)):
            RoomRecorder(tmp_path, "ward", {"continue": bad}, alert)
    with pytest.raises(ValueError):  # complete, not open: a finished recording is never reopened
        RoomRecorder(tmp_path, "ward", {"continue": first.id, "node_id": "b"}, alert)
    assert sorted(p.name for p in tmp_path.rglob("*")) == before
    manifest = json.loads((tmp_path / first.id / "manifest.json").read_text())
    assert manifest["state"] == "complete" and manifest["node_id"] == "a" and "resumed" not in manifest
    await elsewhere.stop()
