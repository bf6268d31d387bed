"""``GET /api/points``, the technician's dashboard: which points each account sees, the filters, online state from
the lobby, and each point's last verdict and trend from its stored link tests."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from support import ROOT, Server

from client.linktest import LinkTestSession
from client.lobby import LobbyClient
from signaling.directory import load_directory
from signaling.linktests.history import LinkTestHistory
from signaling.points_api import TREND_LENGTH
from signaling.store import connect

DIRECTORY = load_directory(ROOT / "directory.yaml")
SEEDED_POINT = "bvdk-lai-chau-hc1"
SEEDED = TREND_LENGTH + 2


def stored_result(n: int) -> dict[str, Any]:
    """The n-th of a run of results in the shape the link-test service stores (to fill a long history quickly)."""
    tier = ("720p", "360p", "180p")[n % 3]
    return {
        "id": uuid.uuid4().hex, "pointId": SEEDED_POINT, "pointLabel": "-", "facilityId": "bvdk-lai-chau",
        "startedBy": "quantri", "startedAt": 1_700_000_000.0 + 3600 * n, "finishedAt": 1_700_000_015.0 + 3600 * n,
        "status": "complete", "stoppedIn": None, "stopReason": None, "paths": [], "measuredOn": "udp",
        "rttMs": 40.0 + n, "jitterMs": 2.0, "loss": 0.0, "lossDown": 0.0, "lossUp": 0.0,
        "downKbps": 1000.0 + n, "upKbps": 500.0 + n, "downAtLeast": False, "upAtLeast": False, "details": {},
        "verdict": {"tier": tier, "carries": {"vi": f"vi {tier}", "en": f"en {tier}"}, "reasons": []},
    }


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("points"), env={
        "HOICHAN_LINKTEST__PING_SECONDS": "1", "HOICHAN_LINKTEST__LOSS_SECONDS": "1",
        "HOICHAN_LINKTEST__RAMP_SECONDS": "2",
        "HOICHAN_LINKTEST__MAX_KBPS": "400", "HOICHAN_LINKTEST__MIN_INTERVAL_SECONDS": "0",
    })
    history = LinkTestHistory(connect(srv.tmp / "data"))
    for n in range(SEEDED):
        history.add(stored_result(n))
    srv.start()
    yield srv
    srv.stop()


def points_of(**facility: str) -> set[str]:
    """The directory's points whose facility has these attributes."""
    return {p.id for p in DIRECTORY.points.values()
            if all(getattr(DIRECTORY.facilities[p.facility], k) == v for k, v in facility.items())}


async def listed(server: Server, user: str, query: str = "") -> dict[str, dict[str, Any]]:
    status, body = await server.get(f"/api/points{query}", user=user)
    assert status == 200, body
    return {p["id"]: p for p in body["points"]}


async def test_each_account_sees_the_points_it_may_test(server: Server) -> None:
    assert set(await listed(server, "admin")) == set(DIRECTORY.points)
    for user, facility in (("technician", "ttyt-muong-te"), ("doctor", "ttyt-muong-te"), ("specialist", "bv-bach-mai")):
        assert set(await listed(server, user)) == points_of(id=facility)
    point = (await listed(server, "technician"))["ttyt-muong-te-hc1"]
    assert point == {
        "id": "ttyt-muong-te-hc1", "label": "Phòng hội chẩn", "facility": "ttyt-muong-te",
        "facilityName": DIRECTORY.facilities["ttyt-muong-te"].name, "tier": "district", "province": "lai-chau",
        "provinceName": DIRECTORY.provinces["lai-chau"].name, "online": False, "last": None, "trend": [],
    }
    assert (await server.get("/api/points", user="admin"))[1]["scope"] == "all"
    assert (await server.get("/api/points", user="technician"))[1]["scope"] == "facility"


@pytest.mark.parametrize("chosen", [
    {"province": "lai-chau"}, {"tier": "central"}, {"province": "lai-chau", "tier": "district"},
    {"facility": "ttyt-sin-ho"}, {"facility": "ttyt-sin-ho", "province": "ha-noi"},
])
async def test_filters_by_province_facility_and_tier(server: Server, chosen: dict[str, str]) -> None:
    query = "?" + "&".join(f"{k}={v}" for k, v in chosen.items())
    expected = points_of(**{"id" if k == "facility" else k: v for k, v in chosen.items()})
    assert set(await listed(server, "admin", query)) == expected
    assert set(await listed(server, "technician", query)) == expected & points_of(id="ttyt-muong-te")


@pytest.mark.parametrize("query", ["province=atlantis", "facility=../etc", "tier=national", "tier=CENTRAL"])
async def test_an_unknown_filter_is_refused(server: Server, query: str) -> None:
    status, body = await server.get(f"/api/points?{query}", user="admin")
    assert status == 400 and body["error"]["code"] == "invalid-payload"


async def test_online_follows_the_lobby_pages_at_a_point(server: Server) -> None:
    lobby = LobbyClient(server.url, await server.login("doctor"))
    await lobby.connect()
    await lobby.enter(point="ttyt-muong-te-cc")
    try:
        seen = await listed(server, "technician")
        assert seen["ttyt-muong-te-cc"]["online"] and not seen["ttyt-muong-te-hc1"]["online"]
    finally:
        await lobby.close()
    deadline = time.monotonic() + 10  # the server notices the closed socket
    while (await listed(server, "technician"))["ttyt-muong-te-cc"]["online"]:
        assert time.monotonic() < deadline, "the point stayed online after its lobby page closed"
        await asyncio.sleep(0.1)


async def test_last_verdict_and_trend_of_a_long_history(server: Server) -> None:
    point = (await listed(server, "admin", "?facility=bvdk-lai-chau"))[SEEDED_POINT]
    newest = stored_result(SEEDED - 1)
    assert point["last"]["startedAt"] == newest["startedAt"] and point["last"]["tier"] == newest["verdict"]["tier"]
    assert point["last"]["carries"] == newest["verdict"]["carries"]
    trend = point["trend"]  # the last TREND_LENGTH tests, oldest first
    assert [t["startedAt"] for t in trend] == [stored_result(n)["startedAt"] for n in range(SEEDED - TREND_LENGTH, SEEDED)]
    assert [t["downKbps"] for t in trend] == [stored_result(n)["downKbps"] for n in range(SEEDED - TREND_LENGTH, SEEDED)]
    assert set(trend[0]) == {"id", "startedAt", "status", "tier", "carries", "rttMs", "jitterMs", "loss", "downKbps",
                             "upKbps"}


async def test_a_link_test_the_server_ran_becomes_the_points_last_verdict(server: Server) -> None:
    results = []
    for _ in range(2):
        session = LinkTestSession(server.url, "ttyt-muong-te-hc1", await server.login("technician"))
        results.append(await session.run(timeout=60))
    point = (await listed(server, "technician"))["ttyt-muong-te-hc1"]
    assert point["last"]["id"] == results[1]["id"] and point["last"]["tier"] == results[1]["verdict"]["tier"]
    assert [t["id"] for t in point["trend"]] == [r["id"] for r in results]
    assert [t["rttMs"] for t in point["trend"]] == [r["rttMs"] for r in results]
    assert (await listed(server, "technician"))["ttyt-muong-te-cc"]["last"] is None
