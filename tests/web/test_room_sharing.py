"""Sharing on the room page in real headless Chromium: an image, a vitals card and marks shared by one doctor's
page appear on the other's, at once."""

from __future__ import annotations

from playwright.async_api import Browser, Page
from sharing_support import jpeg_bytes
from support import Server


async def open_signed_in(browser: Browser, server: Server, room: str, user: str) -> tuple[Page, list[str]]:
    context = await browser.new_context(locale="vi-VN", viewport={"width": 1400, "height": 900})
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await page.goto(f"{server.url}/room/{room}?token={await server.login(user)}")
    await page.wait_for_function("document.body.dataset.state === 'connected'", timeout=20_000)
    return page, errors


async def test_an_image_vitals_and_marks_shared_by_one_page_appear_on_the_other(
    browser: Browser, server: Server
) -> None:
    (a, a_errors), (b, b_errors) = [await open_signed_in(browser, server, "chia-se", u) for u in ("doctor", "specialist")]
    assert await b.locator("#shared-panel").is_hidden()  # nothing shared yet: all the room is video
    # one click and a file: the image is on both pages
    await a.set_input_files("#share-image-input", files=[
        {"name": "x-quang.jpg", "mimeType": "image/jpeg", "buffer": jpeg_bytes(320, 240)}])  # fmt: skip
    for page in (a, b):
        await page.wait_for_function("document.querySelector('#shared-image').naturalWidth === 320", timeout=10_000)
        assert await page.locator("#shared-panel").is_visible()
    assert "BS. Giàng A Páo" in await b.inner_text("#shared-caption")
    # vitals: the form, then a card on the other page with units
    await a.click("#btn-vitals")
    await a.fill("#vitals-form input[name=heartRate]", "112")
    await a.fill("#vitals-form input[name=systolic]", "90")
    await a.fill("#vitals-form input[name=diastolic]", "60")
    await a.fill("#vitals-form input[name=temperature]", "38.6")
    await a.click("#vitals-form button[type=submit]")
    await b.wait_for_selector(".vitals-card dd[data-vital=heartRate]", timeout=10_000)
    assert await b.inner_text(".vitals-card dd[data-vital=heartRate]") == "112 lần/phút"
    assert await b.inner_text(".vitals-card dd[data-vital=bloodPressure]") == "90/60 mmHg"
    assert await b.inner_text(".vitals-card dd[data-vital=temperature]") == "38.6 °C"
    assert await a.locator("#vitals-overlay").is_hidden()
    # an impossible value is refused by the server, shown in the form, and reaches nobody
    await a.click("#btn-vitals")
    await a.fill("#vitals-form input[name=heartRate]", "720")
    await a.click("#vitals-form button[type=submit]")
    await a.wait_for_selector("#vitals-error:not([hidden])", timeout=10_000)
    assert "heartRate" in await a.inner_text("#vitals-error")
    await a.click("#vitals-cancel")
    # the specialist points (live) and pins; the district doctor sees both where they were put
    box = await b.locator("#shared-image").bounding_box()
    assert box is not None
    await b.mouse.move(box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.6)
    await b.mouse.move(box["x"] + box["width"] * 0.25, box["y"] + box["height"] * 0.5, steps=5)
    await a.wait_for_selector(".shared-pointer", timeout=10_000)
    assert "Nguyễn Văn Tâm" in await a.inner_text(".shared-pointer")
    await b.mouse.click(box["x"] + box["width"] * 0.25, box["y"] + box["height"] * 0.5)
    await a.wait_for_selector(".shared-pin", timeout=10_000)
    left = await a.evaluate("parseFloat(document.querySelector('.shared-pin').style.left)")
    assert abs(left - 25) < 1.5
    kinds = await a.evaluate("window.hoichan.shared.map(i => i.kind)")
    assert kinds == ["image", "vitals", "annotation"]
    # a late joiner finds what was shared before it came in
    c, c_errors = await open_signed_in(browser, server, "chia-se", "admin")
    await c.wait_for_function("document.querySelector('#shared-image').naturalWidth === 320", timeout=10_000)
    await c.wait_for_selector(".shared-pin", timeout=10_000)
    assert not a_errors and not b_errors and not c_errors
