"""The room page in real headless Chromium (fake camera): two doctors see each other through the relay."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from playwright.async_api import Browser, Page
from support import Server, free_port



INBOUND_VIDEO = """async () => {
  const pc = window.hoichan && window.hoichan.pc;
  if (!pc) return [];
  const stats = await pc.getStats();
  const out = [];
  stats.forEach(s => { if (s.type === 'inbound-rtp' && s.kind === 'video')
    out.push({framesDecoded: s.framesDecoded || 0, frameWidth: s.frameWidth || 0, mid: s.mid}); });
  return out;
}"""


async def open_room(browser: Browser, server: Server, room: str, name: str, query: str = "") -> tuple[Page, list[str]]:
    context = await browser.new_context(locale="vi-VN")
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await page.goto(f"{server.url}/room/{room}?name={name}&facility=BV%20{name}{query}")
    return page, errors


async def inbound(page: Page) -> list[dict[str, Any]]:
    return await page.evaluate(INBOUND_VIDEO)  # type: ignore[no-any-return]


async def test_two_browsers_see_each_other(browser: Browser, server: Server) -> None:
    (a, a_errors), (b, b_errors) = [await open_room(browser, server, "browsers", n) for n in ("BacSiA", "BacSiB")]
    for page in (a, b):
        await page.wait_for_function("document.body.dataset.state === 'connected'", timeout=20_000)

    async def decoded(page: Page) -> int:
        videos = [s for s in await inbound(page) if s["frameWidth"] > 0]
        return max((s["framesDecoded"] for s in videos), default=0)

    for page in (a, b):
        first = 0
        for _ in range(100):
            first = await decoded(page)
            if first > 0:
                break
            await page.wait_for_timeout(100)
        assert first > 0, await inbound(page)
        later = first
        for _ in range(50):  # framesDecoded keeps rising: 10 more frames within 5 s (a loaded machine decodes in fits)
            await page.wait_for_timeout(100)
            later = await decoded(page)
            if later > first + 10:
                break
        assert later > first + 10, (first, later)
    # each page shows one remote tile, labelled with the other doctor's name
    assert await a.locator(".tile[data-participant-id]").count() == 1
    assert "BacSiB" in await a.locator(".tile[data-participant-id]").inner_text()
    # the link-quality bars: on the remote tile and on the self tile, with the figures in Vietnamese on hover
    for selector in (".tile[data-participant-id]", ".tile.tile-local"):
        await a.wait_for_function(
            f"['excellent', 'good'].includes(document.querySelector('{selector}').dataset.linkQuality)", timeout=10_000)
    title = await a.locator(".tile[data-participant-id] .link-quality").get_attribute("title")
    assert title is not None and "Đường truyền" in title and "ms" in title, title
    await a.locator(".tile[data-participant-id] .link-quality").click()
    assert "Mất gói" in await a.locator(".tile[data-participant-id] .link-quality-details").inner_text()
    assert not a_errors and not b_errors
    # leaving removes the tile on the other side
    await b.close()
    await wait_for_tiles(a, 0)


async def wait_for_tiles(page: Page, count: int) -> None:
    await page.wait_for_function(f"document.querySelectorAll('.tile[data-participant-id]').length === {count}",
                                 timeout=30_000)


async def test_page_speaks_vietnamese_by_default_and_english_on_request(browser: Browser, server: Server) -> None:
    page, errors = await open_room(browser, server, "lang", "BacSi")
    await page.wait_for_function("document.body.dataset.state === 'connected'", timeout=20_000)
    assert await page.evaluate("document.documentElement.lang") == "vi"
    body = await page.inner_text("body")
    assert "Rời phòng" in body
    await page.get_by_role("button", name="EN").click()
    assert await page.evaluate("document.documentElement.lang") == "en"
    assert "Leave" in await page.inner_text("body")
    assert not errors


async def test_everyone_sees_that_the_room_is_recorded(browser: Browser, server: Server) -> None:
    token = await server.login("doctor")  # only signed-in staff may ask for a recording
    opener, errors = await open_room(browser, server, "recorded", "BacSiA", query=f"&record=1&token={token}")
    await opener.wait_for_function("document.body.dataset.state === 'connected'", timeout=20_000)
    joiner, more_errors = await open_room(browser, server, "recorded", "BacSiB")
    for page in (opener, joiner):
        await page.wait_for_selector("#recording:not([hidden])", timeout=10_000)
        assert "Đang ghi hình" in await page.inner_text("#recording")
    unrecorded, _ = await open_room(browser, server, "not-recorded", "BacSiC")
    await unrecorded.wait_for_function("document.body.dataset.state === 'connected'", timeout=20_000)
    assert await unrecorded.locator("#recording").is_hidden()
    assert not errors and not more_errors


async def test_a_degraded_cluster_says_so_at_once(browser: Browser, tmp_path: Path) -> None:
    """Cluster mode with Redis unreachable: the join is refused within about a second, in plain Vietnamese, and the
    page offers to try again."""
    server = Server(tmp_path, env={"HOICHAN_CLUSTER__ROLE": "signaling",
                                   "HOICHAN_CLUSTER__REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"})
    server.start()
    try:
        page, errors = await open_room(browser, server, "khong-redis", "BacSiA")
        await page.wait_for_function("document.body.dataset.state === 'failed'", timeout=10_000)
        text = await page.inner_text("#banner")
        assert "Hệ thống đang gặp sự cố" in text and "Cuộc gọi đang diễn ra không bị ảnh hưởng" in text, text
        assert await page.locator("#banner .banner-retry").is_visible()  # try again
        assert not errors
    finally:
        server.stop()
