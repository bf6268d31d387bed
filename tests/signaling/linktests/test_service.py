"""Link tests through a real server: who may test which point, how often, what is stored, and what a test that
loses its client leaves behind."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import socketio
from support import Server, server_fixture, wait_for

from client.link_emulator import Impairment, LinkEmulator
from client.linktest import LinkTestError, LinkTestResponder, LinkTestSession

SHORT = {
    "HOICHAN_LINKTEST__PING_SECONDS": "1",
    "HOICHAN_LINKTEST__LOSS_SECONDS": "1",
    "HOICHAN_LINKTEST__MAX_KBPS": "800",
    "HOICHAN_LINKTEST__CONNECT_TIMEOUT_SECONDS": "3",
    "HOICHAN_LINKTEST__MIN_INTERVAL_SECONDS": "300",
}
server = server_fixture("linktests", SHORT)

OWN_POINT, OTHER_OWN_POINT, CENTRAL_POINT = "ttyt-muong-te-hc1", "ttyt-muong-te-cc", "bv-bach-mai-hc1"


class Client:
    """A signed-in socket.io connection that sends whatever it is told to."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.sio = socketio.AsyncClient(reconnection=False)
        self.events: list[tuple[str, Any]] = []
        for name in ("error", "linktest-progress", "linktest-result"):
            self.sio.on(name, lambda data, name=name: self.events.append((name, data)))

    async def connect(self, user: str | None) -> Client:
        auth = {"token": await self.server.login(user)} if user else None
        await self.sio.connect(self.server.url, transports=["websocket"], auth=auth)
        return self

    async def call(self, event: str, data: Any) -> dict[str, Any]:
        return await self.sio.call(event, data, timeout=20)


@pytest.fixture
async def clients(server: Server) -> AsyncIterator[list[Client]]:
    made: list[Client] = []
    yield made
    for client in made:
        await client.sio.disconnect()


async def client(server: Server, clients: list[Client], user: str | None) -> Client:
    made = await Client(server).connect(user)
    clients.append(made)
    return made


async def test_a_technician_tests_a_point_of_their_facility_and_its_history_keeps_the_result(server: Server) -> None:
    progress: list[dict[str, Any]] = []
    link = LinkEmulator(up=Impairment(rate_kbps=512), down=Impairment(delay_ms=40))
    session = LinkTestSession(server.url, OWN_POINT, await server.login("technician"), emulator=link,
                              on_progress=progress.append)
    try:
        result = await session.run(timeout=60)
    finally:
        link.close()
    assert result["status"] == "complete" and result["pointId"] == OWN_POINT
    assert result["facilityId"] == "ttyt-muong-te" and result["startedBy"] == "ktv.lan"
    assert abs(result["rttMs"] - 41) < 15 and result["loss"] == 0
    assert 0.8 * 512 <= result["upKbps"] <= 1.2 * 512 and not result["upAtLeast"]
    assert result["downKbps"] >= 0.85 * 800 and result["downAtLeast"]  # up to the ramp's ceiling
    assert result["verdict"]["tier"] == "360p"  # 512 kbit/s up: more than 360p needs, less than 720p
    assert {p["path"]: p["status"] for p in result["paths"]} == {
        "udp": "ok", "tcp": "not-supported", "turn-udp": "not-configured", "turn-tcp": "not-configured",
        "turn-tls": "not-configured"}
    assert [p["phase"] for p in progress][0] == "connect" and progress[-1]["phase"] == "loss"

    status, history = await server.get(f"/api/points/{OWN_POINT}/link-tests", user="technician")
    assert status == 200 and [t["id"] for t in history["tests"]] == [result["id"]]
    assert history["tests"][0] == result and history["point"]["facility"] == "ttyt-muong-te"
    for user, expected in (("doctor", 200), ("admin", 200), ("specialist", 403)):  # doctor: same facility
        assert (await server.get(f"/api/points/{OWN_POINT}/link-tests", user=user))[0] == expected
        assert (await server.get(f"/api/link-tests/{result['id']}", user=user))[0] == (
            200 if expected == 200 else 404)
    assert (await server.get(f"/api/points/{OWN_POINT}/link-tests"))[0] == 401
    assert (await server.get("/api/points/nowhere/link-tests", user="admin"))[0] == 404
    for query in ("limit=0", "limit=x", "limit=501", "before=yesterday"):
        assert (await server.get(f"/api/points/{OWN_POINT}/link-tests?{query}", user="admin"))[0] == 400
    # there is no way to submit a result: only tests the server ran and measured are stored
    status, _ = await server.request("POST", f"/api/points/{OWN_POINT}/link-tests", await server.login("admin"),
                                     json={"verdict": {"tier": "720p"}})
    assert status == 405

    # the same point again, right away: refused, and nothing new is stored
    again = LinkTestSession(server.url, OWN_POINT, await server.login("technician"))
    with pytest.raises(LinkTestError) as refused:
        await again.run(timeout=20)
    assert refused.value.code == "rate-limited"
    assert len((await server.get(f"/api/points/{OWN_POINT}/link-tests", user="admin"))[1]["tests"]) == 1


@pytest.mark.parametrize(("user", "point", "code"), [
    ("specialist", OWN_POINT, "forbidden"),  # a doctor of another facility
    (None, OWN_POINT, "forbidden"),  # a guest
    ("technician", CENTRAL_POINT, "forbidden"),
    ("technician", "nowhere", "not-found"),
    ("technician", "Not A Point!", "invalid-payload"),
])
async def test_only_staff_of_the_points_facility_may_test_it(
    server: Server, clients: list[Client], user: str | None, point: str, code: str,
) -> None:
    caller = await client(server, clients, user)
    answer = await caller.call("linktest-start", {"point": point})
    assert not answer["ok"] and answer["error"]["code"] == code
    assert (await server.get(f"/api/points/{CENTRAL_POINT}/link-tests", user="admin"))[1]["tests"] == []


async def test_nobody_else_can_answer_or_cancel_a_running_test(server: Server, clients: list[Client]) -> None:
    admin = await client(server, clients, "admin")
    started = await admin.call("linktest-start", {"point": CENTRAL_POINT})
    assert started["ok"] and [p["path"] for p in started["paths"]] == ["udp"]
    intruder = await client(server, clients, "technician")
    responder = LinkTestResponder()
    try:
        answer = await responder.answer(started["paths"][0]["sdp"])
        for event, payload in (("linktest-answer", {"testId": started["testId"], "path": "udp", "sdp": answer}),
                               ("linktest-cancel", {"testId": started["testId"]})):
            refused = await intruder.call(event, payload)
            assert not refused["ok"] and refused["error"]["code"] == "not-found"
        bad = await admin.call("linktest-answer", {"testId": started["testId"], "path": "udp", "sdp": "v=0 junk"})
        assert not bad["ok"] and bad["error"]["code"] == "invalid-sdp"
        assert (await admin.call("linktest-cancel", {"testId": started["testId"]}))["ok"]
        await wait_for(lambda: any(name == "linktest-result" for name, _ in admin.events), timeout=15)
    finally:
        await responder.close()
    [(_, data)] = [(n, d) for n, d in admin.events if n == "linktest-result"]
    assert data["result"]["status"] == "partial" and data["result"]["stopReason"] == "cancelled"
    assert data["result"]["verdict"]["tier"] == "unknown"


async def test_a_test_whose_client_goes_away_ends_partial_and_is_kept(server: Server, clients: list[Client]) -> None:
    technician = await client(server, clients, "technician")
    started = await technician.call("linktest-start", {"point": OTHER_OWN_POINT})
    assert started["ok"]
    responder = LinkTestResponder()
    try:
        sdp = await responder.answer(started["paths"][0]["sdp"])
        assert (await technician.call("linktest-answer", {"testId": started["testId"], "path": "udp", "sdp": sdp}))["ok"]
        await wait_for(lambda: any(n == "linktest-progress" and d["phase"] == "ping" for n, d in technician.events), 15)
        await technician.sio.disconnect()  # the technician's laptop drops off the network

        async def stored() -> list[dict[str, Any]]:
            return (await server.get(f"/api/points/{OTHER_OWN_POINT}/link-tests", user="technician"))[1]["tests"]

        deadline = asyncio.get_running_loop().time() + 15
        while not await stored():
            assert asyncio.get_running_loop().time() < deadline, "no partial result was stored"
            await asyncio.sleep(0.2)
    finally:
        await responder.close()
    [result] = await stored()
    assert result["status"] == "partial" and result["stopReason"] == "client-left"
    assert result["stoppedIn"] in ("ping", "down") and result["verdict"]["tier"] == "unknown"
    assert [r["code"] for r in result["verdict"]["reasons"]] == ["incomplete"]
    assert "disconnected" in result["verdict"]["reasons"][0]["en"]
