"""Sharing in a room against a real server: images over HTTP, vitals and annotations over socket.io, all seen by
the room at once, bad input refused with nothing stored or shown, and the record still there after a restart."""

from __future__ import annotations

import asyncio
import io
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import socketio
from PIL import Image
from sharing_support import HTML, PDF, jpeg_bytes, png_bytes
from support import Server, server_fixture, wait_for

from client.participant import Participant

MAX_BYTES = 200_000
server = server_fixture(
    "sharing",
    {"HOICHAN_SHARING__MAX_IMAGE_BYTES": str(MAX_BYTES), "HOICHAN_SHARING__ANNOTATION_BURST": "5",
     "HOICHAN_SHARING__ANNOTATION_RATE": "2"},
)  # fmt: skip


@dataclass
class Seat:
    """A participant and what the room sent it."""

    participant: Participant
    token: str | None
    items: list[dict[str, Any]] = field(default_factory=list)
    pointers: list[dict[str, Any]] = field(default_factory=list)

    async def call(self, event: str, payload: Any) -> dict[str, Any]:
        return await self.participant.sio.call(event, payload, timeout=10)  # type: ignore[no-any-return]


async def seat(server: Server, room: str, user: str | None) -> Seat:
    token = await server.login(user) if user is not None else None
    participant = Participant(server.url, room, "Khách" if user is None else "-", consume=False, token=token)
    s = Seat(participant, token)
    participant.sio.on("shared-item", s.items.append)
    participant.sio.on("pointer", s.pointers.append)
    await participant.join()
    return s


@pytest.fixture
async def room(server: Server, request: pytest.FixtureRequest) -> AsyncIterator[tuple[Seat, Seat]]:
    """The district doctor and the central specialist in a room of this test's own."""
    name = re.sub(r"[^A-Za-z0-9-]+", "-", request.node.name)[-60:]
    seats = [await seat(server, name, "doctor"), await seat(server, name, "specialist")]
    yield seats[0], seats[1]
    await asyncio.gather(*(s.participant.leave() for s in seats))


async def upload(
    server: Server, room: str, token: str | None, data: bytes, filename: str = "photo.jpg",
    content_type: str = "image/jpeg", caption: str | None = None,
) -> tuple[int, dict[str, Any]]:  # fmt: skip
    form = aiohttp.FormData()
    form.add_field("image", data, filename=filename, content_type=content_type)
    if caption is not None:
        form.add_field("caption", caption)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{server.url}/api/rooms/{room}/shared/images", data=form, headers=headers) as r:
            return r.status, await r.json()


async def fetch(server: Server, path: str, token: str | None) -> tuple[int, str, bytes]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession() as session:
        async with session.get(server.url + path, headers=headers) as r:
            return r.status, r.content_type, await r.read()


def stored_files(server: Server) -> list[Path]:
    return sorted((server.tmp / "data" / "shared").rglob("*"))


async def test_an_image_shared_by_one_is_seen_by_everyone_without_its_metadata(
    server: Server, room: tuple[Seat, Seat]
) -> None:
    doctor, specialist = room
    status, answer = await upload(server, doctor.participant.room, doctor.token, jpeg_bytes(), caption="X-quang ngực")
    assert status == 201, answer
    item = answer["item"]
    assert item["kind"] == "image" and item["author"]["username"] == "bs.huyen"
    assert item["data"] | {"bytes": 0} == {"format": "jpeg", "width": 64, "height": 48, "bytes": 0,
                                          "caption": "X-quang ngực", "url": item["data"]["url"]}  # fmt: skip
    for s in room:  # everyone in the room, the sharer included, is told at once
        await wait_for(lambda s=s: [i["id"] for i in s.items] == [item["id"]], timeout=5)
    status, kind, body = await fetch(server, item["data"]["url"], specialist.token)
    assert (status, kind) == (200, "image/jpeg") and len(body) == item["data"]["bytes"]
    image = Image.open(io.BytesIO(body))
    assert image.size == (64, 48) and not image.getexif() and b"HoichanPhone" not in body
    status, answer = await upload(server, specialist.participant.room, specialist.token, png_bytes(), "ecg.png",
                                  "image/png")  # fmt: skip
    assert status == 201 and answer["item"]["data"]["format"] == "png"
    status, kind, body = await fetch(server, answer["item"]["data"]["url"], doctor.token)
    assert (status, kind) == (200, "image/png") and b"Nguyen Van A" not in body
    status, listed = await server.get(f"/api/rooms/{doctor.participant.room}/shared", user="doctor")
    assert status == 200 and [i["id"] for i in listed["items"]] == [item["id"], answer["item"]["id"]]


async def test_bad_uploads_are_refused_and_nothing_is_stored_or_shown(server: Server, room: tuple[Seat, Seat]) -> None:
    doctor, specialist = room
    name = doctor.participant.room
    await server.login("technician")
    outsider = await seat(server, "elsewhere", "technician")  # a participant, but of another room
    files_before = stored_files(server)
    big = jpeg_bytes(64, 48) + b"\0" * MAX_BYTES
    truncated = jpeg_bytes(640, 480)
    cases: list[tuple[str, int, str, Any]] = [
        ("oversize", 413, "payload-too-large", dict(room=name, token=doctor.token, data=big)),
        ("pdf named .png", 415, "unsupported-type",
         dict(room=name, token=doctor.token, data=PDF, filename="xray.png", content_type="image/png")),
        ("html named .png", 415, "unsupported-type",
         dict(room=name, token=doctor.token, data=HTML, filename="xray.png", content_type="image/png")),
        ("truncated", 400, "invalid-image",
         dict(room=name, token=doctor.token, data=truncated[: len(truncated) // 2])),
        ("wrong room", 403, "forbidden", dict(room="elsewhere", token=doctor.token, data=jpeg_bytes())),
        ("non-participant", 403, "forbidden", dict(room=name, token=outsider.token, data=jpeg_bytes())),
        ("no token", 401, "unauthorized", dict(room=name, token=None, data=jpeg_bytes())),
        ("garbage token", 401, "unauthorized", dict(room=name, token="x.y.z", data=jpeg_bytes())),
    ]  # fmt: skip
    for label, status, code, kwargs in cases:
        got, answer = await upload(server, **kwargs)
        assert (got, answer["error"]["code"]) == (status, code), (label, answer)
        assert answer["error"]["message"], label
    # not a form at all, and a form without the image
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {doctor.token}"}) as session:
        async with session.post(f"{server.url}/api/rooms/{name}/shared/images", json={"image": "x"}) as r:
            assert r.status == 400 and (await r.json())["error"]["code"] == "invalid-payload"
        form = aiohttp.FormData()
        form.add_field("caption", "no image")
        async with session.post(f"{server.url}/api/rooms/{name}/shared/images", data=form) as r:
            assert r.status == 400 and "image" in (await r.json())["error"]["message"]
    await asyncio.sleep(0.5)  # a stray broadcast would have arrived by now
    assert doctor.items == specialist.items == outsider.items == []
    assert stored_files(server) == files_before
    _, listed = await server.get(f"/api/rooms/{name}/shared", user="doctor")
    assert listed["items"] == []
    await outsider.participant.leave()


async def test_only_the_rooms_participants_and_admins_see_its_record(server: Server, room: tuple[Seat, Seat]) -> None:
    doctor, _ = room
    name = doctor.participant.room
    status, answer = await upload(server, name, doctor.token, jpeg_bytes())
    assert status == 201
    url = answer["item"]["data"]["url"]
    for user, expected in (("admin", 200), ("technician", 403), ("specialist", 200)):
        token = await server.login(user)
        assert (await fetch(server, url, token))[0] == expected, user
        assert (await server.get(f"/api/rooms/{name}/shared", user=user))[0] == expected, user
    assert (await fetch(server, url, None))[0] == 401
    unknown = url.replace(answer["item"]["id"], "0" * 32)
    assert (await fetch(server, unknown, doctor.token))[0] == 404
    other_room = url.replace(f"/rooms/{name}/", "/rooms/elsewhere/")  # the id exists, but not in that room
    assert (await fetch(server, other_room, await server.login("admin")))[0] == 404
    assert (await fetch(server, url.replace(answer["item"]["id"], "..%2F..%2Fsecret.key"), doctor.token))[0] == 404


async def test_vitals_reach_the_room_as_a_card_with_units(server: Server, room: tuple[Seat, Seat]) -> None:
    doctor, specialist = room
    vitals = {"heartRate": 112, "systolic": 90, "diastolic": 60, "spo2": 91, "temperature": 38.6,
              "respiratoryRate": 28}  # fmt: skip
    ack = await doctor.call("share-vitals", vitals)
    assert ack["ok"], ack
    await wait_for(lambda: len(specialist.items) == 1, timeout=5)
    card = specialist.items[0]
    assert card["kind"] == "vitals" and card["data"]["values"] == vitals and card == ack["item"]
    assert card["data"]["units"] == {"heartRate": "/min", "systolic": "mmHg", "diastolic": "mmHg", "spo2": "%",
                                     "temperature": "°C", "respiratoryRate": "/min"}  # fmt: skip
    ack = await specialist.call("share-vitals", {"spo2": 97})  # one sign alone is a card too
    assert ack["ok"] and ack["item"]["data"] == {"values": {"spo2": 97}, "units": {"spo2": "%"}}


@pytest.mark.parametrize(
    ("payload", "says"),
    [
        ({"heartRate": 720}, "heartRate"),
        ({"heartRate": 10}, "heartRate"),
        ({"spo2": 101}, "spo2"),
        ({"temperature": 47.5}, "temperature"),
        ({"respiratoryRate": 2}, "respiratoryRate"),
        ({"systolic": 120}, "both systolic and diastolic"),
        ({"systolic": 80, "diastolic": 90}, "higher than diastolic"),
        ({"heartRate": "72"}, "heartRate"),
        ({"heartRate": 72.5}, "heartRate"),
        ({"heartRate": True}, "heartRate"),
        ({}, "at least one"),
        ({"heartRate": 72, "glucose": 5}, "glucose"),
        ([72], "object"),
    ],
)
async def test_bad_vitals_are_refused_and_not_broadcast(
    server: Server, room: tuple[Seat, Seat], payload: Any, says: str
) -> None:
    doctor, specialist = room
    ack = await doctor.call("share-vitals", payload)
    assert not ack["ok"] and ack["error"]["code"] == "invalid-payload" and says in ack["error"]["message"], ack
    await asyncio.sleep(0.3)
    assert specialist.items == [] and doctor.items == []


async def test_annotations_are_live_kept_rate_limited_and_for_participants_only(
    server: Server, room: tuple[Seat, Seat]
) -> None:
    doctor, specialist = room
    name = doctor.participant.room
    _, answer = await upload(server, name, doctor.token, jpeg_bytes())
    image_id = answer["item"]["id"]
    await wait_for(lambda: len(specialist.items) == 1, timeout=5)
    # a live pointer: the others see it, nothing is kept
    ack = await specialist.call("annotate", {"imageId": image_id, "shape": "pointer", "points": [[0.25, 0.75]]})
    assert ack == {"ok": True}
    await wait_for(lambda: len(doctor.pointers) == 1, timeout=5)
    assert doctor.pointers[0] | {"participantId": ""} == {
        "imageId": image_id, "participantId": "", "name": "PGS. Nguyễn Văn Tâm", "x": 0.25, "y": 0.75}
    assert specialist.pointers == []  # not echoed to the one pointing
    # a stroke: kept and shown to everyone
    stroke = [[0.1, 0.1], [0.2, 0.25], [0.3, 0.5]]
    ack = await specialist.call("annotate", {"imageId": image_id, "shape": "stroke", "points": stroke})
    assert ack["ok"] and ack["item"]["data"] == {"imageId": image_id, "shape": "stroke", "points": stroke}
    await wait_for(lambda: len(doctor.items) == 2, timeout=5)
    # bad marks
    for payload, code in (
        ({"imageId": image_id, "shape": "stroke", "points": [[0.1, 1.5], [0.2, 0.2]]}, "invalid-payload"),
        ({"imageId": image_id, "shape": "pin", "points": [[0.1, 0.1], [0.2, 0.2]]}, "invalid-payload"),
        ({"imageId": "f" * 32, "shape": "pin", "points": [[0.5, 0.5]]}, "not-found"),
    ):
        ack = await doctor.call("annotate", payload)
        assert not ack["ok"] and ack["error"]["code"] == code, (payload, ack)
    # rate: a burst of 5, then 2 per second; what is refused is not shown
    start, answers = time.monotonic(), []
    for _ in range(12):
        answers.append(await doctor.call("annotate", {"imageId": image_id, "shape": "pointer", "points": [[0.5, 0.5]]}))
    allowed = 5 + 2 * (time.monotonic() - start) + 1
    accepted = [a for a in answers if a["ok"]]
    refused = [a for a in answers if not a["ok"]]
    assert 4 <= len(accepted) <= allowed and refused and {a["error"]["code"] for a in refused} == {"rate-limited"}
    await asyncio.sleep(0.5)
    assert len(specialist.pointers) == len(accepted)
    # someone not in the room, and a guest in it, may not annotate
    outsider = await seat(server, "elsewhere-annotate", "technician")
    ack = await outsider.call("annotate", {"imageId": image_id, "shape": "pin", "points": [[0.5, 0.5]]})
    assert ack["error"]["code"] == "not-found"  # the image is not in the outsider's own room
    guest = await seat(server, name, None)
    ack = await guest.call("annotate", {"imageId": image_id, "shape": "pin", "points": [[0.5, 0.5]]})
    assert ack["error"]["code"] == "forbidden"
    ack = await guest.call("share-vitals", {"spo2": 97})
    assert ack["error"]["code"] == "forbidden"
    await asyncio.gather(outsider.participant.leave(), guest.participant.leave())
    _, listed = await server.get(f"/api/rooms/{name}/shared", user="admin")
    assert [i["kind"] for i in listed["items"]] == ["image", "annotation"]


async def test_a_connection_that_has_not_joined_cannot_annotate(server: Server, room: tuple[Seat, Seat]) -> None:
    doctor, specialist = room
    _, answer = await upload(server, doctor.participant.room, doctor.token, jpeg_bytes())
    sio = socketio.AsyncClient(reconnection=False)
    await sio.connect(server.url, transports=["websocket"], auth={"token": await server.login("technician")})
    try:
        payload = {"imageId": answer["item"]["id"], "shape": "pin", "points": [[0.5, 0.5]]}
        ack = await sio.call("annotate", payload, timeout=10)
        assert ack["error"]["code"] == "not-joined"
    finally:
        await sio.disconnect()
    await asyncio.sleep(0.3)
    assert len(specialist.items) == 1  # only the image


async def test_the_record_survives_a_restart(tmp_path: Path) -> None:
    srv = Server(tmp_path)
    srv.start()
    try:
        doctor = await seat(srv, "restart", "doctor")
        _, answer = await upload(srv, "restart", doctor.token, jpeg_bytes())
        image = answer["item"]
        ack = await doctor.call("annotate", {"imageId": image["id"], "shape": "pin", "points": [[0.5, 0.5]]})
        assert ack["ok"]
        assert (await doctor.call("share-vitals", {"heartRate": 80}))["ok"]
        _, before = await srv.get("/api/rooms/restart/shared", user="doctor")
        _, _, image_bytes = await fetch(srv, image["data"]["url"], doctor.token)
        await doctor.participant.leave()
    finally:
        srv.kill()  # no clean shutdown: what was acknowledged must already be on disk
    srv.start()
    try:
        srv._tokens.clear()
        status, after = await srv.get("/api/rooms/restart/shared", user="doctor")  # attended before the restart
        assert status == 200 and after == before and len(after["items"]) == 3
        status, _, body = await fetch(srv, image["data"]["url"], await srv.login("doctor"))
        assert status == 200 and body == image_bytes
    finally:
        srv.stop()
