"""Bad input over socket.io: each gets a clear error, changes nothing, and other rooms keep their media."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import socketio
from support import PatternVideoTrack, Server, ToneAudioTrack, wait_for

from client.participant import Participant


class RawClient:
    """A socket.io client that sends whatever it is told to, and keeps what the server sends back."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.sio = socketio.AsyncClient(reconnection=False)
        self.errors: list[dict[str, Any]] = []
        self.offers: list[dict[str, Any]] = []
        self.sio.on("error", lambda data: self.errors.append(data))
        self.sio.on("offer", lambda data: self.offers.append(data))

    async def connect(self) -> RawClient:
        await self.sio.connect(self.server.url, transports=["websocket"])
        return self

    async def call(self, event: str, data: Any = None) -> Any:
        return await self.sio.call(event, data, timeout=10)

    async def error_for(self, event: str, data: Any = None) -> dict[str, Any]:
        """Send ``event`` and return the ``error`` event it caused."""
        count = len(self.errors)
        await self.sio.emit(event, data)
        await wait_for(lambda: len(self.errors) > count, timeout=5)
        return self.errors[-1]


@pytest.fixture
async def raw(server: Server) -> AsyncIterator[RawClient]:
    client = await RawClient(server).connect()
    yield client
    await client.sio.disconnect()


@pytest.fixture
async def busy_room(server: Server) -> AsyncIterator[tuple[Participant, Participant]]:
    """Another room with media flowing, to prove bad input elsewhere does not disturb it."""
    a = Participant(server.url, "healthy", "A", tracks=[PatternVideoTrack(), ToneAudioTrack()])
    b = Participant(server.url, "healthy", "B", tracks=[PatternVideoTrack(), ToneAudioTrack()])
    await a.join()
    await b.join()
    await wait_for(lambda: (v := a.video_from(b.id)) is not None and v.frames > 10, timeout=15)
    yield a, b
    await asyncio.gather(a.leave(), b.leave())


async def assert_still_flowing(a: Participant, b: Participant) -> None:
    video, audio = a.video_from(b.id), a.audio_from(b.id)
    assert video is not None and audio is not None
    frames, samples = video.frames, audio.frames
    await wait_for(lambda: video.frames > frames + 20 and audio.frames > samples + 30, timeout=5)


async def test_bad_input_is_refused_and_other_rooms_keep_flowing(
    server: Server, raw: RawClient, busy_room: tuple[Participant, Participant]
) -> None:
    # before joining
    assert (await raw.error_for("answer", {"sdp": "v=0"}))["code"] == "not-joined"
    # wrong types, missing and extra fields, not an object
    ack = await raw.call("join", {"room": "bad", "name": 123})
    assert ack["ok"] is False and ack["error"]["code"] == "invalid-payload" and "name" in ack["error"]["message"]
    ack = await raw.call("join", {"room": "../etc", "name": "X"})
    assert ack["error"]["code"] == "invalid-payload"
    ack = await raw.call("join", {"room": "bad", "name": "X", "role": "admin"})
    assert ack["error"]["code"] == "invalid-payload"
    ack = await raw.call("join", ["not", "an", "object"])
    assert ack["error"]["code"] == "invalid-payload"
    # unknown event
    error = await raw.error_for("drop-tables", {})
    assert error["code"] == "unknown-event" and error["event"] == "drop-tables"

    ack = await raw.call("join", {"room": "bad", "name": "Mallory", "facility": "TTYT"})
    assert ack["ok"] is True
    await wait_for(lambda: raw.offers, timeout=10)
    # oversize message
    error = await raw.error_for("answer", {"sdp": "x" * 200_000})
    assert error["code"] == "payload-too-large"
    # a second offer while the server's offer is pending
    error = await raw.error_for("offer", {"sdp": raw.offers[-1]["sdp"]})
    assert error["code"] == "negotiation-pending"
    # malformed SDP
    error = await raw.error_for("answer", {"sdp": "v=0\r\nthis is not sdp\r\n"})
    assert error["code"] == "invalid-sdp"
    error = await raw.error_for("candidate", {"candidate": "candidate:garbage", "sdpMid": "0", "sdpMLineIndex": 0})
    assert error["code"] == "invalid-payload"
    error = await raw.error_for("media-state", {"audioMuted": "yes", "videoOff": False})
    assert error["code"] == "invalid-payload"

    # nothing above changed the rooms, and media elsewhere never stopped
    status, room = await server.get("/api/rooms/bad", user="admin")
    assert status == 200 and [p["name"] for p in room["participants"]] == ["Mallory"]
    await assert_still_flowing(*busy_room)
    status, health = await server.get("/healthz")
    assert status == 200 and health["status"] == "ok"


async def test_resume_with_a_forged_token_is_refused(server: Server, raw: RawClient) -> None:
    ack = await raw.call("join", {"room": "forged", "name": "X", "resume": "not-a-token"})
    assert ack["ok"] is False and ack["error"]["code"] == "bad-resume"
    status, _ = await server.get("/api/rooms/forged", user="admin")
    assert status == 404


async def test_room_size_limit(server: Server) -> None:
    clients = [await RawClient(server).connect() for _ in range(9)]
    try:
        acks = [await c.call("join", {"room": "full", "name": f"P{i}"}) for i, c in enumerate(clients)]
        assert [a["ok"] for a in acks] == [True] * 8 + [False]
        assert acks[-1]["error"]["code"] == "room-full"
    finally:
        for c in clients:
            await c.sio.disconnect()
    await wait_for(lambda: True, timeout=1)


async def test_rest_api_answers_and_refuses_unknown_rooms(server: Server) -> None:
    status, health = await server.get("/healthz")
    assert status == 200 and health["status"] == "ok" and health["version"]
    assert (await server.get("/api/rooms/nope", user="admin"))[0] == 404
    assert (await server.get("/room/..%2f..%2fetc"))[0] == 404
    assert (await server.get("/static/../signaling/config.py"))[0] == 404


async def test_tiles_name_a_signed_in_facility_as_the_directory_does(server: Server) -> None:
    doctor = socketio.AsyncClient(reconnection=False)
    await doctor.connect(server.url, transports=["websocket"], auth={"token": await server.login("doctor")})
    guest = await RawClient(server).connect()
    try:
        mine = await doctor.call("join", {"room": "names"}, timeout=10)
        assert mine["self"]["facility"] == "ttyt-muong-te"  # the id, which the server checks
        assert mine["self"]["facilityName"] == "Trung tâm Y tế Mường Tè"  # what people read
        theirs = await guest.call("join", {"room": "names", "name": "Khách", "facility": "Trạm y tế Ka Lăng"})
        assert theirs["self"]["facilityName"] == "Trạm y tế Ka Lăng"  # a guest's facility is what they typed
        assert [p["facilityName"] for p in theirs["peers"]] == ["Trung tâm Y tế Mường Tè"]
    finally:
        await doctor.disconnect()
        await guest.sio.disconnect()
