"""The TURN paths of a link test, against a real coturn on loopback with time-limited (TURN REST) credentials."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
import socketio
from support import Server
from turn_support import TurnServer, needs_turnserver

from client.link_emulator import Impairment, LinkEmulator
from client.linktest import LinkTestSession

pytestmark = needs_turnserver


@pytest.fixture(scope="module")
def turn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TurnServer]:
    server = TurnServer(tmp_path_factory.mktemp("coturn"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, turn: TurnServer) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("turn-linktests"), env={
        "HOICHAN_LINKTEST__PING_SECONDS": "1",
        "HOICHAN_LINKTEST__LOSS_SECONDS": "1",
        "HOICHAN_LINKTEST__MAX_KBPS": "800",
        "HOICHAN_LINKTEST__CONNECT_TIMEOUT_SECONDS": "3",
        "HOICHAN_LINKTEST__MIN_INTERVAL_SECONDS": "0",
        "HOICHAN_TURN__URLS": json.dumps(turn.urls),
        "HOICHAN_TURN__SECRET": turn.secret,
    })
    srv.start()
    yield srv
    srv.stop()


async def test_a_site_whose_udp_is_blocked_is_measured_through_turn(
    server: Server, turn: TurnServer, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(turn.cert))  # the client trusts coturn's self-signed certificate
    link = LinkEmulator(up=Impairment(loss=1.0), down=Impairment(loss=1.0))  # UDP to the media server: dropped
    try:
        result = await LinkTestSession(server.url, "ttyt-muong-te-hc1", await server.login("technician"),
                                       emulator=link).run(timeout=60)
    finally:
        link.close()
    paths = {p["path"]: p for p in result["paths"]}
    assert {name: p["status"] for name, p in paths.items()} == {
        "udp": "failed", "turn-udp": "ok", "turn-tcp": "ok", "turn-tls": "ok", "tcp": "not-supported"}
    for name in ("turn-udp", "turn-tcp", "turn-tls"):  # the server reached each through coturn's relay address
        assert paths[name]["candidate"]["remote"] == "relay" and paths[name]["remoteAddress"].startswith("127.0.0.1:")
    assert link.up.counters.packets_in > 0 and link.up.counters.delivered == 0  # the direct path was tried, in vain
    assert result["status"] == "complete" and result["measuredOn"] == "turn-udp"
    assert result["rttMs"] < 50 and result["upKbps"] > 500 and result["downKbps"] > 500
    udp = [r for r in result["verdict"]["reasons"] if r["code"] == "udp-blocked"]
    assert udp and udp[0]["severity"] == "warning" and "TURN over UDP" in udp[0]["en"]
    assert result["verdict"]["tier"] == "360p"  # the ramp's 800 kbit/s ceiling: more than 360p needs


async def test_turn_credentials_are_handed_out_per_path_and_expire(server: Server) -> None:
    sio = socketio.AsyncClient(reconnection=False)
    await sio.connect(server.url, transports=["websocket"], auth={"token": await server.login("admin")})
    try:
        started = await sio.call("linktest-start", {"point": "bv-bach-mai-hc1"}, timeout=20)
        assert started["ok"]
        by_path = {p["path"]: p for p in started["paths"]}
        assert list(by_path) == ["udp", "turn-udp", "turn-tcp", "turn-tls"]
        assert by_path["udp"]["iceServers"] == [] and by_path["udp"]["iceTransportPolicy"] == "all"
        for name, scheme in (("turn-udp", "turn:"), ("turn-tcp", "turn:"), ("turn-tls", "turns:")):
            [ice] = by_path[name]["iceServers"]
            assert by_path[name]["iceTransportPolicy"] == "relay" and len(ice["urls"]) == 1
            assert ice["urls"][0].startswith(scheme)
            expiry, who = ice["username"].split(":")
            assert who == "quantri" and 3500 < int(expiry) - time.time() <= 3600
        assert (await sio.call("linktest-cancel", {"testId": started["testId"]}, timeout=10))["ok"]
    finally:
        await sio.disconnect()
