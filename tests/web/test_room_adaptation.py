"""The room's tiles say what adaptation is in force, in real headless Chromium: a site capped by its point's
technician (and Chromium then sends less, following the relay's REMB), and a site switched to audio-only (which
stops sending video), in Vietnamese and in English."""

from __future__ import annotations

from playwright.async_api import Browser, Page
from support import Server

CONNECTED = "document.body.dataset.state === 'connected'"
POINT = "ttyt-muong-te-hc1"
CAPS = f"/api/points/{POINT}/caps"


async def page_for(browser: Browser, server: Server, errors: list[str], user: str | None = None) -> Page:
    context = await browser.new_context(locale="vi-VN")
    if user is not None:  # signed in, at a connection point of the account's facility (as the lobby page keeps it)
        token = await server.login(user)
        await context.add_init_script(f"sessionStorage.setItem('hoichan.token', {token!r});"
                                      f"localStorage.setItem('hoichan.point', {POINT!r});")
    page = await context.new_page()
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    return page


async def video_send_kbps(page: Page, seconds: float = 3.0) -> float:
    """What the page sends as video (every simulcast encoding), in kbit/s over ``seconds``."""
    return float(await page.evaluate("""async (seconds) => {
      const sent = async () => {
        let bytes = 0;
        (await window.hoichan.pc.getStats()).forEach((s) => {
          if (s.type === 'outbound-rtp' && s.kind === 'video') bytes += s.bytesSent + (s.headerBytesSent || 0);
        });
        return bytes;
      };
      const before = await sent();
      await new Promise((resolve) => setTimeout(resolve, seconds * 1000));
      return (await sent() - before) * 8 / 1000 / seconds;
    }""", seconds))


def video_frames(page: Page) -> str:
    return """async () => {
      let n = 0;
      (await window.hoichan.pc.getStats()).forEach((s) => {
        if (s.type === 'inbound-rtp' && s.kind === 'video') n += s.framesDecoded || 0;
      });
      return n;
    }"""


async def test_tiles_show_a_capped_site_and_an_audio_only_site(browser: Browser, server: Server) -> None:
    errors: list[str] = []
    technician = await server.login("technician")
    doctor = await page_for(browser, server, errors, "doctor")
    viewer = await page_for(browser, server, errors)
    try:
        await doctor.goto(f"{server.url}/room/thich-ung")
        await doctor.wait_for_function(CONNECTED, timeout=20_000)
        await viewer.goto(f"{server.url}/room/thich-ung?name=Nguoi%20xem")
        await viewer.wait_for_function(CONNECTED, timeout=20_000)
        tile = viewer.locator(".tile[data-participant-id]")
        await tile.wait_for()
        await viewer.wait_for_function(f"({video_frames(viewer)})().then((n) => n > 10)", timeout=20_000)

        uncapped = [await video_send_kbps(doctor)]  # Chromium's estimate ramps up on the relay's REMB
        while uncapped[-1] <= 450 and len(uncapped) < 8:
            uncapped.append(await video_send_kbps(doctor))
        assert uncapped[-1] > 450, uncapped
        # the technician caps the point while the doctor is in the room: everyone's tile of the doctor says so
        status, _ = await server.request("PUT", CAPS, token=technician, json={"uplinkKbps": 300, "downlinkKbps": 500})
        assert status == 200
        await doctor.wait_for_timeout(3000)  # and Chromium follows the relay's REMB: video under 300 − 40 kbit/s
        capped = [await video_send_kbps(doctor) for _ in range(2)]
        assert max(capped) <= 300, capped
        await viewer.wait_for_selector(".tile[data-participant-id][data-capped-kbps='↑300 ↓500']")
        assert "Giới hạn ↑300 ↓500 kbit/s" in await tile.locator(".tile-adaptation").inner_text()
        await doctor.wait_for_selector("#self-view .tile[data-capped-kbps='↑300 ↓500']")

        # the doctor's site goes audio-only: its page stops sending video, the others see "audio only"
        await doctor.click("#btn-audio-only")
        await viewer.wait_for_selector(".tile[data-participant-id][data-audio-only='true']")
        assert "Chỉ âm thanh" in await tile.locator(".tile-adaptation").inner_text()
        assert await tile.locator(".placeholder-text").inner_text() == "Chỉ âm thanh"
        # the doctor's own page shows it once the server's answer reaches it (the viewer's may come first)
        await doctor.wait_for_selector("#btn-audio-only[aria-pressed='true']", timeout=5_000)
        await doctor.wait_for_function(
            "!window.hoichan.pc.getSenders().some((s) => s.track && s.track.kind === 'video')", timeout=5_000)
        # and the relay sends the doctor no video: the tile of the viewer says why
        await doctor.wait_for_selector(".tile[data-participant-id][data-video-paused='audio-only']", timeout=10_000)
        assert await doctor.locator(".tile[data-participant-id] .placeholder-text").inner_text() == \
            "Chỉ âm thanh: không nhận video"

        await viewer.click("#lang-toggle")
        await viewer.wait_for_function(
            "document.querySelector('.tile[data-participant-id] .tile-adaptation').textContent"
            ".includes('Audio only · Capped at ↑300 ↓500 kbit/s')")

        # back to video: the picture returns, the badge goes
        await doctor.click("#btn-audio-only")
        await viewer.wait_for_selector(".tile[data-participant-id][data-audio-only='false']")
        before = await viewer.evaluate(video_frames(viewer))
        await viewer.wait_for_function(f"({video_frames(viewer)})().then((n) => n > {before} + 10)", timeout=20_000)
        assert not errors
    finally:
        await server.request("DELETE", CAPS, token=technician)
        await doctor.context.close()
        await viewer.context.close()
