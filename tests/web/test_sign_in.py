"""Sign-in in real headless Chromium: the login page, joining a room as the account, a token carried by the room
URL, and the "sign in" state when the server refuses a guest or an expired token."""

from __future__ import annotations

import datetime
from collections.abc import Iterator

import pytest
from playwright.async_api import Browser, Page
from support import ACCOUNTS, PASSWORD, SECRET, Server

from signaling.accounts import Account
from signaling.tokens import TokenIssuer

CONNECTED = "document.body.dataset.state === 'connected'"
DOCTOR = ACCOUNTS["doctor"]



@pytest.fixture(scope="module")
def closed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("closed"), env={"HOICHAN_AUTH__ALLOW_GUESTS": "false"})
    srv.start()
    yield srv
    srv.stop()


async def new_page(browser: Browser, errors: list[str]) -> Page:
    page = await (await browser.new_context(locale="vi-VN")).new_page()
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    return page


async def test_sign_in_then_join_as_the_account(browser: Browser, server: Server) -> None:
    errors: list[str] = []
    doctor = await new_page(browser, errors)
    await doctor.goto(f"{server.url}/login?next=%2Froom%2Fdang-nhap")
    await doctor.fill("#username", DOCTOR["username"])
    await doctor.fill("#password", "sai-mat-khau")
    await doctor.click("button[type=submit]")
    await doctor.wait_for_selector("#login-error:not([hidden])")
    assert await doctor.inner_text("#login-error") == "Sai tên đăng nhập hoặc mật khẩu."

    await doctor.fill("#password", PASSWORD)
    await doctor.click("button[type=submit]")
    await doctor.wait_for_url(f"{server.url}/room/dang-nhap")
    await doctor.wait_for_function(CONNECTED, timeout=20_000)  # no name asked: the account has one
    assert DOCTOR["display_name"] in await doctor.inner_text("#self-view .tile-name")  # "Bạn · <name>"

    guest = await new_page(browser, errors)
    await guest.goto(f"{server.url}/room/dang-nhap?name=Nguoi%20nha")
    await guest.wait_for_function(CONNECTED, timeout=20_000)
    tile = guest.locator(".tile[data-participant-id]")
    await tile.wait_for()
    # the facility as the directory names it (ttyt-muong-te), not its id
    assert DOCTOR["display_name"] in await tile.inner_text() and "Trung tâm Y tế Mường Tè" in await tile.inner_text()

    # the start page shows who is signed in in this tab, and signs out
    await doctor.goto(server.url + "/")
    await doctor.wait_for_selector("#account-user:not([hidden])")
    assert DOCTOR["display_name"] in await doctor.inner_text("#account-user")
    assert await doctor.is_hidden("#name")  # the account's name is used, nothing to type
    await doctor.route("**/room/tu-trang-chu*", lambda route: route.abort())  # the URL is what matters here
    await doctor.fill("#room", "tu-trang-chu")
    await doctor.check("input[name=record]")
    async with doctor.expect_request("**/room/tu-trang-chu*") as opened:
        await doctor.click("#landing-form button[type=submit]", no_wait_after=True)
    assert (await opened.value).url == f"{server.url}/room/tu-trang-chu?record=1"  # no name: the account's is used
    await doctor.goto(server.url + "/")
    await doctor.wait_for_selector("#account-user:not([hidden])")
    await doctor.click("#sign-out")
    await doctor.wait_for_selector("#sign-in:not([hidden])")
    assert await doctor.evaluate("sessionStorage.getItem('hoichan.token')") is None
    assert await doctor.is_visible("#name")
    assert not errors


async def test_a_closed_server_asks_to_sign_in_and_takes_a_token_in_the_url(browser: Browser, closed: Server) -> None:
    errors: list[str] = []
    page = await new_page(browser, errors)
    await page.goto(f"{closed.url}/room/kin?name=Khach")
    await page.wait_for_selector("#signin-overlay:not([hidden])")
    assert await page.evaluate("document.body.dataset.state") == "failed"
    assert await page.get_attribute("#signin-link", "href") == "/login?next=%2Froom%2Fkin"
    assert "chỉ dành cho tài khoản đã đăng nhập" in await page.inner_text("#signin-overlay")
    assert await page.is_hidden(".banner-retry")

    issuer = TokenIssuer(SECRET.encode(), datetime.timedelta(minutes=720))
    account = Account(DOCTOR["username"], DOCTOR["display_name"], "doctor", DOCTOR["facility"])
    expired = issuer.issue(account, now=datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=2))
    await page.goto(f"{closed.url}/room/kin?token={expired}")
    await page.wait_for_selector("#signin-overlay:not([hidden])")
    assert "hết hạn" in await page.inner_text("#signin-overlay")

    await page.goto(f"{closed.url}/room/kin?token={await closed.login('doctor')}")
    await page.wait_for_function(CONNECTED, timeout=20_000)
    assert "token" not in page.url  # taken out of the address bar, kept for this tab
    _, room = await closed.get("/api/rooms/kin", user="admin")
    assert [p["name"] for p in room["participants"]] == [DOCTOR["display_name"]]
    assert not errors
