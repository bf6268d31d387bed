"""The admin recordings page in real headless Chromium: find a recording, play its tracks (decoded frames, seeking),
combine with a progress bar, hold, delete through the typed confirmation, read the access log; others are refused."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page
from recordings_support import RecordingMaker, make_clips
from support import Server


pytestmark = pytest.mark.skipif(
    not shutil.which("chromium") or not shutil.which("ffmpeg"), reason="needs Debian's chromium and ffmpeg"
)


@pytest.fixture(scope="module")
def maker(server: Server, tmp_path_factory: pytest.TempPathFactory) -> RecordingMaker:
    return RecordingMaker(server.tmp / "data" / "recordings", make_clips(tmp_path_factory.mktemp("clips")))


async def open_page(browser: Browser, server: Server, user: str) -> tuple[Page, list[str]]:
    """The page, signed in as ``user`` (the token where the sign-in page keeps it: this tab's sessionStorage)."""
    context = await browser.new_context(locale="vi-VN", accept_downloads=True)
    token = await server.login(user)
    await context.add_init_script(f"sessionStorage.setItem('hoichan.token', {token!r})")
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await page.goto(f"{server.url}/admin/recordings")
    return page, errors


async def test_admin_finds_plays_combines_holds_and_deletes(
    browser: Browser, server: Server, maker: RecordingMaker
) -> None:
    rid = maker.make(consult_id="hc-2026-0815")
    other = maker.make(people=(("BS. Lò Văn Hùng", "TTYT Phong Thổ", 0.0),))
    page, errors = await open_page(browser, server, "admin")
    await page.wait_for_selector("body[data-state=ready]", timeout=15_000)
    assert await page.text_content("h1") == "Bản ghi hội chẩn"  # Vietnamese by default

    await page.fill("input[name=facility]", "phong thổ")
    await page.click("#filters button[type=submit]")
    await page.wait_for_function(
        f"document.querySelectorAll('#recordings tbody tr').length === 1 && "
        f"document.querySelector('#recordings tbody tr').dataset.recordingId === '{other}'"
    )
    await page.fill("input[name=facility]", "")
    await page.fill("input[name=consult]", "hc-2026-0815")
    await page.click("#filters button[type=submit]")
    row = f"#recordings tbody tr[data-recording-id='{rid}']"
    await page.wait_for_selector(row)
    await page.click(row)
    await page.wait_for_selector(f"#detail[data-recording-id='{rid}']")
    assert rid in (await page.text_content("#manifest") or "")

    # The first person's video track plays, decodes frames and seeks (HTTP Range under the hood).
    video = "#tracks figure.track-video video"
    await page.wait_for_function(f"document.querySelector('{video}').readyState >= 1", timeout=15_000)
    await page.eval_on_selector(video, "v => { v.muted = true; return v.play(); }")
    await page.wait_for_function(
        f"(() => {{ const v = document.querySelector('{video}'); return v.currentTime > 0.5 && v.videoWidth > 0 && "
        f"v.getVideoPlaybackQuality().totalVideoFrames > 5; }})()",
        timeout=15_000,
    )
    await page.eval_on_selector(video, "v => { v.pause(); v.currentTime = 2.0; }")
    await page.wait_for_function(f"!document.querySelector('{video}').seeking && "
                                 f"Math.abs(document.querySelector('{video}').currentTime - 2.0) < 0.3")

    # Combined view: progress shown, then a playable video.
    await page.click("#combine")
    await page.wait_for_selector("#combined-player:not([hidden])", timeout=60_000)
    assert await page.get_attribute("#combine-status", "data-state") == "done"
    await page.wait_for_function("document.querySelector('#combined-player').readyState >= 1", timeout=15_000)
    assert await page.eval_on_selector("#combined-player", "v => v.videoWidth") == 640

    # Legal hold: badge on, delete disabled with the reason; off again.
    await page.check("#hold")
    await page.wait_for_selector("#detail-hold-badge:not([hidden])")
    assert await page.is_disabled("#delete")
    await page.uncheck("#hold")
    await page.wait_for_selector("#detail-hold-badge[hidden]", state="attached")

    # Delete: the button stays disabled until the id is typed exactly.
    await page.click("#delete")
    await page.fill("#delete-confirm", rid[:-1])
    assert await page.is_disabled("#delete-go")
    await page.fill("#delete-confirm", rid)
    await page.click("#delete-go")
    await page.wait_for_selector(row, state="detached")
    assert not (maker.root / rid).exists() and (maker.root / other).exists()

    # The access log shows all of it; English on request.
    await page.click("#tab-audit")
    await page.fill("#audit-recording", rid)
    await page.click("#audit-refresh")
    await page.wait_for_selector("#audit tbody tr[data-action=delete]")
    async with page.expect_download() as download:
        await page.click("#audit-export")
    csv = Path(await (await download.value).path()).read_text()
    assert csv.startswith("at,actor,role,remote,action") and "combine" in csv and "delete" in csv
    await page.click("#lang-toggle")
    assert await page.text_content("h1") == "Consultation recordings"
    assert errors == []


async def test_non_admins_are_told_and_shown_nothing(browser: Browser, server: Server, maker: RecordingMaker) -> None:
    maker.make()
    page, errors = await open_page(browser, server, "doctor")
    await page.wait_for_selector("body[data-state=forbidden]", timeout=15_000)
    assert await page.is_hidden("#admin-main")
    assert "doctor" in (await page.text_content("#admin-message") or "")
    assert errors == []
