"""The lobby and consult-log pages in real headless Chromium (fake camera): a district doctor signs in and calls,
a central doctor's page rings (audibly) and accepts, both pages end up in the consult's room with media flowing;
the consult log shows the consult and, for an admin, statistics with a chart; Vietnamese first, English on request.
"""

from __future__ import annotations

from typing import Any

from playwright.async_api import Browser, Page
from support import ACCOUNTS, PASSWORD, Server

CONNECTED = "document.body.dataset.state === 'connected'"
INBOUND_VIDEO = """async () => {
  const pc = window.hoichan && window.hoichan.pc;
  if (!pc) return [];
  const stats = await pc.getStats();
  const out = [];
  stats.forEach(s => { if (s.type === 'inbound-rtp' && s.kind === 'video')
    out.push({framesDecoded: s.framesDecoded || 0, frameWidth: s.frameWidth || 0}); });
  return out;
}"""


async def signed_in(browser: Browser, server: Server, alias: str, page_path: str, errors: list[str]) -> Page:
    """A fresh browser context signed in as ACCOUNTS[alias] through the login page, landing on ``page_path``."""
    page = await (await browser.new_context(locale="vi-VN")).new_page()
    page.on("pageerror", lambda exc: errors.append(f"{alias}: {exc}"))
    await page.goto(f"{server.url}/login?next={page_path}")
    await page.fill("#username", ACCOUNTS[alias]["username"])
    await page.fill("#password", PASSWORD)
    await page.click("button[type=submit]")
    await page.wait_for_url(f"{server.url}{page_path}")
    await page.wait_for_function("document.body.dataset.state === 'ready'", timeout=15_000)
    return page


async def decoded(page: Page) -> int:
    videos: list[dict[str, Any]] = [s for s in await page.evaluate(INBOUND_VIDEO) if s["frameWidth"] > 0]
    return max((s["framesDecoded"] for s in videos), default=0)


async def test_district_calls_central_answers_both_in_the_room(browser: Browser, server: Server) -> None:
    errors: list[str] = []
    central = await signed_in(browser, server, "specialist", "/lobby", errors)
    assert await central.locator("#central").is_visible() and await central.locator("#district").is_hidden()
    await central.wait_for_function("window.hoichanLobby.connected")
    await central.click("#duty")  # a click: also the gesture that lets the ring sound
    await central.wait_for_function("window.hoichanLobby.onDuty === true")
    assert "Đang trực" in await central.inner_text("#duty")

    district = await signed_in(browser, server, "doctor", "/lobby", errors)
    assert await district.locator("#district").is_visible() and await district.locator("#central").is_hidden()
    await district.wait_for_function("window.hoichanLobby.connected")
    await district.wait_for_function("document.querySelector('#specialty option[value=\"tim-mach\"]')"
                                     ".textContent.includes('1 đang trực')")  # presence: one cardiologist on duty
    await district.select_option("#specialty", "tim-mach")
    await district.check("input[name=urgency][value=emergency]")
    await district.fill("#summary", "Nam 58 tuổi, đau ngực trái 2 giờ, ST chênh lên DII, DIII, aVF.")
    await district.click("#call")

    # the district page follows its request live: ringing whom
    card = district.locator("#requests .consult-card")
    await card.wait_for()
    assert await card.get_attribute("data-state") == "ringing"
    await district.wait_for_function("document.querySelector('#requests .ring-list')?.textContent"
                                     f".includes('{ACCOUNTS['specialist']['display_name']}')")
    # the central page rings, audibly, with urgency and summary
    call = central.locator("#calls .call-card[data-state=ringing]")
    await call.wait_for(timeout=10_000)
    assert "Cấp cứu" in await call.inner_text() and "ST chênh lên" in await call.inner_text()
    assert ACCOUNTS["doctor"]["display_name"] in await call.inner_text()
    await central.wait_for_function("document.body.dataset.ringing === 'true' && window.hoichanLobby.ringing")
    assert await central.evaluate("window.hoichanLobby.audio") == "running"

    await call.locator("[data-action=accept]").click()
    for page in (central, district):
        await page.wait_for_url(f"{server.url}/room/consult-*", timeout=15_000)
        await page.wait_for_function(CONNECTED, timeout=20_000)
    assert central.url == district.url
    for page in (central, district):
        first = 0
        for _ in range(100):
            first = await decoded(page)
            if first > 0:
                break
            await page.wait_for_timeout(100)
        assert first > 0, await page.evaluate(INBOUND_VIDEO)
        for _ in range(50):  # frames keep coming: ten more within 5 s (1.5 s on an idle machine)
            if await decoded(page) > first + 10:
                break
            await page.wait_for_timeout(100)
        assert await decoded(page) > first + 10
    # the answering doctor can invite more experts; the caller cannot
    await central.locator("#invite").wait_for()
    assert await district.locator("#invite").count() == 0
    assert not errors, errors


async def test_consult_log_and_statistics_with_chart(browser: Browser, server: Server) -> None:
    errors: list[str] = []
    # a consult to show: requested and cancelled by the district doctor through the lobby page
    district = await signed_in(browser, server, "doctor", "/lobby", errors)
    await district.wait_for_function("window.hoichanLobby.connected")
    await district.fill("#summary", "Trẻ 3 tuổi sốt cao")
    await district.click("#call")
    await district.locator("#requests [data-action=cancel]").first.click()
    await district.wait_for_selector("#requests .consult-card[data-state=cancelled]")

    admin = await signed_in(browser, server, "admin", "/consults", errors)
    assert await admin.locator("#statistics").is_visible()
    await admin.wait_for_function("window.hoichanStats.chart !== null")
    total = await admin.evaluate("window.hoichanStats.statistics.total")
    assert total["count"] >= 1 and total["cancelled"] >= 1
    datasets = await admin.evaluate("window.hoichanStats.chart.data.datasets.map(d => d.label)")
    assert datasets == ["Có người nhận", "Không ai nhận", "Đã hủy", "Thời gian nhận (trung vị)"]
    assert await admin.evaluate("document.getElementById('stats-chart').width") > 0
    assert "Trẻ 3 tuổi" not in await admin.inner_text("#consults")  # the table shows no case summaries
    assert "Đã hủy" in await admin.inner_text("#consults")
    await admin.select_option("select[name=by]", "province")
    await admin.click("#filters button[type=submit]")
    await admin.wait_for_function("window.hoichanStats.statistics.by === 'province'")
    assert "Lai Châu" in await admin.inner_text("#stats-table")
    await admin.get_by_role("button", name="EN").click()
    assert "Consult log" in await admin.inner_text("h1")
    await admin.wait_for_function("window.hoichanStats.chart.data.datasets[0].label === 'Answered'")

    doctor = await signed_in(browser, server, "doctor", "/consults", errors)  # a doctor: own consults, no statistics
    assert await doctor.locator("#statistics").is_hidden() and await doctor.locator("#csv").is_hidden()
    await doctor.wait_for_function("window.hoichanStats.consults.length >= 1")
    assert not errors, errors
