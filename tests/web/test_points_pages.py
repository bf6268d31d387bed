"""The technician's pages in real headless Chromium: the connection-point dashboard (scope, filters, online state,
last verdict, trend) and a point's page, where the browser itself runs a link test against the server over loopback
(its data channels speak media/linktest_wire.py), shows progress and the verdict, and finds the stored result in the
history list and chart; with TURN configured, through each TURN path as well."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.async_api import Browser, Page
from support import ACCOUNTS, PASSWORD, ROOT, Server, server_fixture
from turn_support import TurnServer, needs_turnserver

from client.lobby import LobbyClient
from signaling.directory import load_directory

server = server_fixture("points-pages", {
    "HOICHAN_LINKTEST__PING_SECONDS": "2",
    "HOICHAN_LINKTEST__LOSS_SECONDS": "1",
    "HOICHAN_LINKTEST__RAMP_SECONDS": "4",
    "HOICHAN_LINKTEST__MAX_KBPS": "1500",
})

READY = "document.body.dataset.state === 'ready'"
OWN_POINTS = {"ttyt-muong-te-hc1", "ttyt-muong-te-cc"}  # the technician's facility, ttyt-muong-te
DIRECTORY = load_directory(ROOT / "directory.yaml")


async def signed_in(browser: Browser, server: Server, alias: str, path: str, errors: list[str]) -> Page:
    page = await (await browser.new_context(locale="vi-VN")).new_page()
    page.on("pageerror", lambda exc: errors.append(f"{alias}: {exc}"))
    await page.goto(f"{server.url}/login?next={path}")
    await page.fill("#username", ACCOUNTS[alias]["username"])
    await page.fill("#password", PASSWORD)
    await page.click("button[type=submit]")
    await page.wait_for_url(f"{server.url}{path}")
    await page.wait_for_function("document.body.dataset.state !== 'loading'", timeout=15_000)
    return page


async def rows(page: Page) -> dict[str, dict[str, Any]]:
    """The dashboard's table as the user sees it: point → its row's state."""
    return {r["point"]: r for r in await page.eval_on_selector_all("#points tbody tr", """rows => rows.map(r => ({
        point: r.dataset.point, online: r.dataset.online, tier: r.dataset.tier,
        text: r.textContent, trend: r.querySelector('.trend-cell')?.dataset.trend ?? null,
        spark: JSON.parse(r.querySelector('svg.sparkline')?.dataset.values ?? 'null')}))""")}


async def test_technician_runs_a_link_test_and_finds_it_in_the_history(browser: Browser, server: Server) -> None:
    errors: list[str] = []
    at_point = LobbyClient(server.url, await server.login("doctor"))
    await at_point.connect()
    await at_point.enter(point="ttyt-muong-te-hc1")  # a lobby page open at this point: it is online
    try:
        page = await signed_in(browser, server, "technician", "/points", errors)
        await page.wait_for_function(READY)
        seen = await rows(page)
        assert set(seen) == OWN_POINTS  # a technician's own facility only
        assert seen["ttyt-muong-te-hc1"]["online"] == "true" and seen["ttyt-muong-te-cc"]["online"] == "false"
        assert all("Chưa kiểm tra" in r["text"] and r["tier"] == "" for r in seen.values())
        assert await page.inner_text("#points-scope") == "Các điểm cầu của cơ sở bạn."

        await page.click("a[href='/points/ttyt-muong-te-hc1']")
        await page.wait_for_url(f"{server.url}/points/ttyt-muong-te-hc1")
        await page.wait_for_function(READY)
        assert await page.locator("#tests-empty").is_visible()
        assert "Đang trực tuyến" in await page.inner_text("#point-facts")

        await page.click("#run-test")
        await page.wait_for_function("document.body.dataset.testState === 'running'")
        assert await page.locator("#test-progress").is_visible()
        await page.wait_for_function("window.hoichanPoint.progress.overall > 0.3", timeout=30_000)
        assert "Đang kiểm tra" in await page.inner_text("#progress-text")
        await page.wait_for_function("document.body.dataset.testState !== 'running'", timeout=60_000)
        assert await page.evaluate("document.body.dataset.testState") == "done", await page.inner_text("#point-message")

        result = await page.evaluate("window.hoichanPoint.result")
        assert result["status"] == "complete" and result["pointId"] == "ttyt-muong-te-hc1"
        assert result["startedBy"] == ACCOUNTS["technician"]["username"]
        assert result["rttMs"] > 0 and result["downKbps"] > 0 and result["upKbps"] > 0
        assert result["verdict"]["tier"] in ("720p", "360p", "180p", "audio")
        assert {p["path"]: p["status"] for p in result["paths"]}["udp"] == "ok"
        assert await page.get_attribute("#verdict", "data-tier") == result["verdict"]["tier"]
        assert result["verdict"]["carries"]["vi"] in await page.inner_text("#verdict-carries")
        assert await page.locator("#verdict-reasons li").count() >= 1
        assert await page.inner_text("#verdict-figures dd[data-figure=rtt]") != "—"

        # the server stored it: the page reloaded the history, and the API has it too
        _, stored = await server.get("/api/points/ttyt-muong-te-hc1/link-tests", user="technician")
        assert [t["id"] for t in stored["tests"]] == [result["id"]]
        assert await page.eval_on_selector_all("#tests tbody tr", "rs => rs.map(r => r.dataset.test)") == [result["id"]]
        data = await page.evaluate("window.hoichanPoint.chartData")
        assert data["ids"] == [result["id"]]
        assert [p["y"] for p in data["rttMs"]] == [result["rttMs"]]
        assert [p["y"] for p in data["downKbps"]] == [result["downKbps"]]
        assert [p["y"] for p in data["upKbps"]] == [result["upKbps"]]
        drawn = await page.evaluate("""() => Object.fromEntries(Object.entries(window.hoichanPoint.charts)
            .map(([k, c]) => [k, c.data.datasets.map(d => d.data.length)]))""")
        assert drawn == {"delay": [1, 1, 1], "throughput": [1, 1]}

        await page.click("#lang-toggle")  # English on request
        assert result["verdict"]["carries"]["en"] in await page.inner_text("#verdict-carries")
        await page.click("#lang-toggle")

        # "apply as cap": 80 % of what the test measured each way becomes the point's caps, stored by the server
        assert await page.inner_text("#caps-current") == "Chưa đặt giới hạn."
        await page.click("#apply-cap")
        await page.wait_for_function("document.getElementById('caps').dataset.caps !== ''")
        expected = {"uplinkKbps": max(32, min(20000, int(result["upKbps"] * 0.8))),
                    "downlinkKbps": max(32, min(20000, int(result["downKbps"] * 0.8))),
                    "audioOnly": result["verdict"]["tier"] == "audio"}
        _, caps = await server.get("/api/points/ttyt-muong-te-hc1/caps", user="technician")
        assert {k: caps["caps"][k] for k in expected} == expected
        assert f"↑{expected['uplinkKbps']} kbit/s" in await page.inner_text("#caps-current")
        await page.fill("#caps-up", "10")  # out of range: refused in words, nothing changes
        await page.click("#caps-form button[type=submit]")
        await page.wait_for_selector("#caps-error:not([hidden])")
        assert (await server.get("/api/points/ttyt-muong-te-hc1/caps", user="technician"))[1] == caps
        await page.click("#caps-remove")
        await page.wait_for_function("document.getElementById('caps').dataset.caps === ''")
        assert (await server.get("/api/points/ttyt-muong-te-hc1/caps", user="technician"))[1]["caps"] is None

        # a second start within the point's minimum interval is refused, in words, and changes nothing
        await page.click("#run-test")
        await page.wait_for_function("document.body.dataset.testState === 'failed'", timeout=20_000)
        assert "vừa được kiểm tra" in await page.inner_text("#point-message")
        assert len(await page.evaluate("window.hoichanPoint.tests")) == 1

        # back on the dashboard: the last verdict and the start of a trend
        await page.goto(f"{server.url}/points")
        await page.wait_for_function(READY)
        row = (await rows(page))["ttyt-muong-te-hc1"]
        assert row["tier"] == result["verdict"]["tier"] and result["verdict"]["carries"]["vi"] in row["text"]
        assert row["spark"] == [min(result["downKbps"], result["upKbps"])] and row["trend"] == "none"
        assert errors == []
    finally:
        await at_point.close()


async def test_a_cancelled_test_is_kept_as_partial(browser: Browser, server: Server) -> None:
    errors: list[str] = []
    page = await signed_in(browser, server, "technician", "/points/ttyt-muong-te-cc", errors)
    await page.wait_for_function(READY)
    await page.click("#run-test")
    await page.wait_for_function("window.hoichanPoint.progress.phase === 'ping'", timeout=30_000)
    await page.click("#cancel-test")
    await page.wait_for_function("document.body.dataset.testState !== 'running'", timeout=30_000)
    assert await page.evaluate("document.body.dataset.testState") == "done"
    result = await page.evaluate("window.hoichanPoint.result")
    assert result["status"] == "partial" and result["stopReason"] == "cancelled" and result["stoppedIn"] == "ping"
    assert "Dừng giữa chừng" in await page.inner_text("#verdict-when")
    codes = await page.eval_on_selector_all("#verdict-reasons li", "ls => ls.map(l => l.dataset.code)")
    assert "incomplete" in codes
    assert await page.eval_on_selector_all("#tests tbody tr", "rs => rs.map(r => r.dataset.status)") == ["partial"]
    assert errors == []


async def test_admin_filters_every_point_by_province_facility_and_tier(browser: Browser, server: Server) -> None:
    errors: list[str] = []
    page = await signed_in(browser, server, "admin", "/points", errors)
    await page.wait_for_function(READY)

    def expected(**chosen: str) -> set[str]:
        out = set()
        for point in DIRECTORY.points.values():
            facility = DIRECTORY.facilities[point.facility]
            if all(getattr(facility, "id" if k == "facility" else k) == v for k, v in chosen.items()):
                out.add(point.id)
        return out

    assert set(await rows(page)) == expected() and len(expected()) == len(DIRECTORY.points)
    for choice in ({"province": "lai-chau"}, {"province": "lai-chau", "tier": "district"}, {"tier": "central"},
                   {"facility": "ttyt-sin-ho"}):
        for name in ("province", "facility", "tier"):
            await page.select_option(f"#filters select[name={name}]", choice.get(name, ""))
        want = sorted(expected(**choice))
        await page.wait_for_function("""want => document.body.dataset.state === 'ready' && JSON.stringify(
            [...document.querySelectorAll('#points tbody tr')].map(r => r.dataset.point).sort()) === JSON.stringify(want)""",
                                     arg=want)
        assert set(await rows(page)) == set(want), choice
    tiers = await page.eval_on_selector_all("#filters select[name=tier] option", "os => os.map(o => o.value)")
    assert set(tiers) == {"", "central", "provincial", "district"} | ({"commune"} if any(
        f.tier == "commune" and any(p.facility == f.id for p in DIRECTORY.points.values())
        for f in DIRECTORY.facilities.values()) else set())
    assert errors == []


async def test_a_point_of_another_facility_is_not_shown(browser: Browser, server: Server) -> None:
    errors: list[str] = []
    page = await signed_in(browser, server, "technician", "/points/bv-bach-mai-hc1", errors)
    await page.wait_for_function("document.body.dataset.state === 'failed'")
    assert "không có quyền xem" in await page.inner_text("#point-message")
    assert await page.locator("#point-main").is_hidden()
    assert errors == []


@pytest.fixture(scope="module")
def turn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TurnServer]:
    server = TurnServer(tmp_path_factory.mktemp("coturn"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def turn_server(tmp_path_factory: pytest.TempPathFactory, turn: TurnServer) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("turn-points"), env={
        "HOICHAN_LINKTEST__PING_SECONDS": "1",
        "HOICHAN_LINKTEST__LOSS_SECONDS": "1",
        "HOICHAN_LINKTEST__RAMP_SECONDS": "2",
        "HOICHAN_LINKTEST__MAX_KBPS": "800",
        "HOICHAN_LINKTEST__CONNECT_TIMEOUT_SECONDS": "5",
        "HOICHAN_TURN__URLS": json.dumps(turn.urls),
        "HOICHAN_TURN__SECRET": turn.secret,
    })
    srv.start()
    yield srv
    srv.stop()


@needs_turnserver
async def test_the_page_tests_the_turn_paths_too(browser: Browser, turn_server: Server) -> None:
    """With TURN configured, each TURN path is answered by a relay-only peer connection with the handed-out
    credentials, and the server reports every path."""
    server = turn_server
    errors: list[str] = []
    page = await signed_in(browser, server, "technician", "/points/ttyt-muong-te-hc1", errors)
    await page.wait_for_function("document.body.dataset.state === 'ready'")
    await page.click("#run-test")
    await page.wait_for_function("['done', 'failed'].includes(document.body.dataset.testState)", timeout=60_000)
    assert await page.evaluate("document.body.dataset.testState") == "done", await page.inner_text("#point-message")
    result = await page.evaluate("window.hoichanPoint.result")
    paths = {p["path"]: p for p in result["paths"]}
    assert paths["udp"]["status"] == "ok" and result["measuredOn"] == "udp"
    for name in ("turn-udp", "turn-tcp"):
        assert paths[name]["status"] == "ok" and paths[name]["candidate"]["remote"] == "relay", name
    # Chromium does not trust the test coturn's self-signed certificate: that path fails, is said so, and the test
    # still completes on the others (a real TURN server's certificate is signed by a public authority)
    assert paths["turn-tls"]["status"] == "failed" and result["status"] == "complete"
    shown = await page.eval_on_selector_all("#verdict-paths li", "ls => ls.map(l => [l.dataset.path, l.dataset.status])")
    assert dict(shown) == {name: p["status"] for name, p in paths.items()}
    assert errors == []
