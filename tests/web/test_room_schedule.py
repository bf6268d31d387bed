"""A scheduled session opening, seen from a doctor's room page in real Chromium: a notice with one click to the
session's room, which lets the doctor in and asks a guest to sign in."""

from __future__ import annotations

import datetime

from playwright.async_api import Browser
from support import Server, server_fixture

server = server_fixture("schedule-page", {"HOICHAN_SCHEDULER__TICK_SECONDS": "0.2"})


async def test_a_party_is_told_on_the_room_page_and_joins_in_one_click(browser: Browser, server: Server) -> None:
    context = await browser.new_context(locale="vi-VN")
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await page.goto(f"{server.url}/room/phong-cho?token={await server.login('doctor')}")
    await page.wait_for_function("document.body.dataset.state === 'connected'", timeout=20_000)
    at = (datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=2)).isoformat()
    body = {"title": "Hội chẩn nhi", "kind": "once", "at": at, "accounts": ["bs.huyen"]}
    status, answer = await server.request("POST", "/api/schedules", token=await server.login("admin"), json=body)
    assert status == 201, answer
    toast = page.locator(".toast", has_text="Hội chẩn nhi")
    await toast.wait_for(timeout=15_000)
    await toast.get_by_role("button", name="Vào phòng").click()
    await page.wait_for_url(f"**/room/lich-{answer['schedule']['id']}-*", timeout=10_000)
    await page.wait_for_function("document.body.dataset.state === 'connected'", timeout=20_000)
    room_url = page.url
    # a guest with the same link is asked to sign in
    guest = await (await browser.new_context(locale="vi-VN")).new_page()
    await guest.goto(f"{room_url}?name=Khach")
    await guest.wait_for_selector("#signin-overlay:not([hidden])", timeout=20_000)
    assert not errors
