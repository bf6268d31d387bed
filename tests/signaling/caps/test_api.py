"""``/api/points/{point}/caps``: who may set a point's caps, what is refused, that they last, and joins from a point."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from support import Server

from client.participant import Participant

PATH = "/api/points/ttyt-muong-te-hc1/caps"  # the test technician's and doctor's facility
ELSEWHERE = "/api/points/bv-bach-mai-hc1/caps"


async def put(server: Server, user: str, body: Any, path: str = PATH) -> tuple[int, Any]:
    return await server.request("PUT", path, token=await server.login(user), json=body)


@pytest.mark.parametrize("body", [
    {}, {"audioOnly": False}, {"uplinkKbps": 10}, {"uplinkKbps": 50_000}, {"uplinkKbps": "300"},
    {"downlinkKbps": 300.5}, {"uplinkKbps": True}, {"audioOnly": "yes"}, {"uplinkKbps": 300, "extra": 1}, [300],
])
async def test_bad_caps_are_refused_and_change_nothing(server: Server, body: Any) -> None:
    assert (await put(server, "technician", {"uplinkKbps": 500}))[0] == 200
    status, answer = await put(server, "technician", body)
    assert status == 400 and answer["error"]["code"] == "invalid-payload", answer
    assert (await server.get(PATH, "technician"))[1]["caps"]["uplinkKbps"] == 500


async def test_only_the_points_technicians_and_admins_set_caps(server: Server) -> None:
    assert (await put(server, "doctor", {"uplinkKbps": 300}))[0] == 403  # a doctor of the facility
    assert (await put(server, "technician", {"uplinkKbps": 300}, ELSEWHERE))[0] == 403  # another facility's point
    assert (await put(server, "technician", {"uplinkKbps": 300}, "/api/points/no-such-point/caps"))[0] == 404
    assert (await server.request("PUT", PATH, json={"uplinkKbps": 300}))[0] == 401
    status, answer = await put(server, "admin", {"downlinkKbps": 400, "audioOnly": True}, ELSEWHERE)
    assert status == 200 and answer["caps"]["downlinkKbps"] == 400 and answer["caps"]["audioOnly"] is True
    assert answer["caps"]["setBy"] == "quantri"
    assert (await server.request("DELETE", ELSEWHERE, token=await server.login("admin")))[1]["caps"] is None
    assert (await server.get(ELSEWHERE, "admin"))[1]["caps"] is None


async def test_a_participant_at_the_point_gets_its_caps_and_others_may_not_claim_it(server: Server) -> None:
    assert (await put(server, "technician", {"uplinkKbps": 250, "downlinkKbps": 400}))[0] == 200
    doctor = Participant(server.url, "caps-join", "-", consume=False, token=await server.login("doctor"),
                         point="ttyt-muong-te-hc1")
    guest = Participant(server.url, "caps-join", "Guest", consume=False, point="ttyt-muong-te-hc1")
    outsider = Participant(server.url, "caps-join", "-", consume=False, token=await server.login("specialist"),
                           point="ttyt-muong-te-hc1")
    try:
        await doctor.join()
        assert doctor.limits == {"uplinkKbps": 250, "downlinkKbps": 400, "audioOnly": False}
        for refused in (guest, outsider):
            with pytest.raises(TimeoutError):
                await refused.join(timeout=3)
            assert refused.errors[0]["code"] == "forbidden", refused.errors
    finally:
        for p in (doctor, guest, outsider):
            await p.leave()


async def test_caps_survive_a_restart(tmp_path: Path) -> None:
    server = Server(tmp_path)
    server.start()
    try:
        assert (await put(server, "technician", {"uplinkKbps": 320}))[0] == 200
    finally:
        server.stop()
    again = Server(tmp_path)
    again.start()
    try:
        status, answer = await again.get(PATH, "technician")
        assert status == 200 and answer["caps"]["uplinkKbps"] == 320 and answer["caps"]["setBy"] == "ktv.lan"
    finally:
        again.stop()
