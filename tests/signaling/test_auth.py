"""Roles and facilities enforced by the server: every HTTP route and every socket.io event against every kind of
caller, sign-in and its throttle, token revocation, and who a signed-in participant is.

Callers: no token, a guest (over HTTP a guest is somebody without a token, so the same as none; over socket.io a
connection without a token while guests are allowed), an expired token, a forged one (signed with another key),
a revoked one (its account's password changed since), garbage, and one signed-in account per role.
"""

from __future__ import annotations

import asyncio
import datetime
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
import socketio
from support import ACCOUNTS, PASSWORD, ROOT, SECRET, PatternVideoTrack, Server, ToneAudioTrack, server_fixture, wait_for

from client.lobby import LobbyClient
from client.participant import Participant
from signaling.accounts import Account
from signaling.app import create_app
from signaling.auth import access_of
from signaling.config import Config
from signaling.login import LOCKOUT_SECONDS, MAX_FAILURES, LoginThrottle
from signaling.tokens import TokenIssuer

ROLES = ("doctor", "technician", "admin")
BAD = ("expired", "forged", "revoked", "garbage")
CALLERS = ("none", "guest", *BAD, *ROLES)
TTL = datetime.timedelta(minutes=720)


def account(role: str, version: int = 0) -> Account:
    a = ACCOUNTS[role]
    return Account(a["username"], a["display_name"], a["role"], a["facility"], tuple(a.get("specialties", ())), version)


async def token_for(server: Server, caller: str) -> str | None:
    """The token a caller presents (None: no token at all). Bad ones are made for the admin: the strongest role."""
    genuine = TokenIssuer(SECRET.encode(), TTL)
    if caller in ("none", "guest"):
        return None
    if caller == "expired":
        return genuine.issue(account("admin"), now=datetime.datetime.now(datetime.UTC) - TTL - TTL)
    if caller == "forged":
        return TokenIssuer(b"another key that is not the server's own key", TTL).issue(account("admin"))
    if caller == "revoked":
        return genuine.issue(account("admin", version=7))  # as if issued before seven password changes
    if caller == "garbage":
        return "not.a.token"
    return await server.login(caller)


async def http(method: str, url: str, token: str | None, json: Any = None) -> tuple[int, str, Any, dict[str, str]]:
    """status, raw text, parsed JSON (or None), headers."""
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    async with aiohttp.ClientSession() as session:
        async with session.request(method, url, headers=headers, json=json) as response:
            text = await response.text()
            body = await response.json() if response.content_type == "application/json" else None
            return response.status, text, body, dict(response.headers)


# The tests using it share its event loop: one participant stays in the room for the whole matrix.
@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def in_room(server: Server) -> AsyncIterator[Participant]:
    """The district doctor in room "matrix": a room a technician of the same facility may look at."""
    doctor = Participant(server.url, "matrix", "-", consume=False, token=await server.login("doctor"))
    await doctor.join()
    yield doctor
    await doctor.leave()


# ----------------------------------------------------------------------------------------------------- HTTP

STAFF = {"admin": 200, "technician": 200, "doctor": 403}
SIGNED_IN = {"admin": 200, "technician": 200, "doctor": 200}
ADMIN = {"admin": 200, "technician": 403, "doctor": 403}
PUBLIC = dict.fromkeys(CALLERS, 200)
HTTP_MATRIX: dict[tuple[str, str], dict[str, int]] = {
    ("GET", "/api/rooms"): STAFF,
    ("GET", "/api/rooms/matrix"): STAFF,
    ("GET", "/api/me"): SIGNED_IN,
    ("GET", "/api/directory"): SIGNED_IN,
    ("POST", "/api/directory/reload"): ADMIN,
    ("GET", "/api/presence"): SIGNED_IN,
    ("GET", "/api/consults"): SIGNED_IN,
    ("GET", "/api/consults.csv"): ADMIN,
    ("GET", "/api/statistics"): ADMIN,
    ("GET", "/lobby"): PUBLIC,
    ("GET", "/consults"): PUBLIC,
    ("GET", "/api/points"): SIGNED_IN,  # and then only the points of one's facility (admins: all)
    ("GET", "/points"): PUBLIC,
    ("GET", "/points/ttyt-muong-te-hc1"): PUBLIC,
    ("GET", "/api/points/ttyt-muong-te-hc1/caps"): STAFF,  # technicians of the point's facility, admins
    ("DELETE", "/api/points/ttyt-muong-te-cc/caps"): STAFF,
    ("GET", "/api/login"): PUBLIC,
    ("POST", "/api/login"): PUBLIC,
    ("GET", "/healthz"): PUBLIC,
    ("GET", "/"): PUBLIC,
    ("GET", "/login"): PUBLIC,
    ("GET", "/room/matrix"): PUBLIC,
    ("GET", "/static/js/i18n.js"): PUBLIC,
}


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize(("method", "path"), list(HTTP_MATRIX))
async def test_http_route_matrix(server: Server, in_room: Participant, method: str, path: str, caller: str) -> None:
    expected = HTTP_MATRIX[(method, path)].get(caller, 401)
    body = {"username": ACCOUNTS["doctor"]["username"], "password": PASSWORD} if path == "/api/login" else None
    status, text, answer, headers = await http(method, server.url + path, await token_for(server, caller), body)
    assert status == expected, text
    if answer is not None:  # no API answer ever mentions a password or its hash
        assert "argon2" not in text and "password" not in text.lower()
    if status == 401:
        assert answer["error"]["code"] == "unauthorized" and headers["WWW-Authenticate"].startswith("Bearer")
    elif status == 403:
        assert answer["error"]["code"] == "forbidden"
    elif path == "/api/me":
        assert answer["user"] == {
            "username": ACCOUNTS[caller]["username"],
            "displayName": ACCOUNTS[caller]["display_name"],
            "role": caller,
            "facility": ACCOUNTS[caller]["facility"],
            "specialties": [],
        }
    elif path == "/api/rooms/matrix":
        assert [p["name"] for p in answer["participants"]] == [ACCOUNTS["doctor"]["display_name"]]


def test_every_route_is_declared_public_or_guarded(tmp_path: Path) -> None:
    """A route added later without ``require`` or ``public`` fails here, before it can leak anything."""
    app = create_app(Config(store={"path": tmp_path}))
    undeclared = []
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("path") or info.get("formatter") or info.get("prefix")
        if path in ("/static", "/socket.io/"):  # files anyone may fetch; socket.io authenticates on connect
            continue
        if access_of(route.handler) is None:
            undeclared.append(f"{route.method} {path}")
    assert not undeclared
    guarded = {
        f"{r.method} {r.resource.canonical}": access_of(r.handler)  # type: ignore[union-attr]
        for r in app.router.routes()
        if isinstance(access_of(r.handler), frozenset) and r.method != "HEAD"  # aiohttp's HEAD twin of each GET
    }
    assert guarded == {  # the inventory of who may use what: a new guarded route is added here on purpose
        "GET /api/rooms": frozenset({"admin", "technician"}),
        "GET /api/rooms/{room_id}": frozenset({"admin", "technician"}),
        "GET /api/me": frozenset(ROLES),
        # sharing: the handler then admits only the room's participants (and admins, to look)
        **{route: frozenset(ROLES) for route in (
            "POST /api/rooms/{room_id}/shared/images", "GET /api/rooms/{room_id}/shared",
            "GET /api/rooms/{room_id}/shared/{item_id}/image",
            "GET /api/rooms/{room_id}/link-history",  # and the handler: only technicians/doctors who took part
        )},  # fmt: skip
        "GET /api/directory": frozenset(ROLES),
        "POST /api/directory/reload": frozenset({"admin"}),
        "GET /metrics": frozenset({"admin"}),  # or the configured scrape token (tests/signaling/test_metrics.py)
        "GET /api/presence": frozenset(ROLES),
        "GET /api/consults": frozenset(ROLES),
        "GET /api/consults/{id}": frozenset(ROLES),  # and then only one's own consults, below
        "GET /api/consults.csv": frozenset({"admin"}),
        "GET /api/statistics": frozenset({"admin"}),
        **{route: frozenset({"admin"}) for route in (
            "GET /api/recordings", "GET /api/recordings/{id}", "GET /api/recordings/{id}/tracks/{file}",
            "GET /api/recordings/{id}/combined", "GET /api/recordings/{id}/zip", "POST /api/recordings/{id}/combine",
            "PUT /api/recordings/{id}/hold", "DELETE /api/recordings/{id}", "GET /api/audit",
            "POST /api/schedules", "GET /api/schedules", "DELETE /api/schedules/{schedule_id}",
        )},  # fmt: skip
        "GET /api/schedules/upcoming": frozenset(ROLES),
        # link tests: the handler then admits only staff of the point's facility (and admins)
        "GET /api/points/{point_id}/link-tests": frozenset(ROLES),
        "GET /api/link-tests/{test_id}": frozenset(ROLES),
        "GET /api/points": frozenset(ROLES),  # and then only the points of one's facility (admins: all)
        # a point's caps: the handler then admits only technicians of the point's facility (and admins)
        **{f"{method} /api/points/{{point_id}}/caps": frozenset({"admin", "technician"})
           for method in ("GET", "PUT", "DELETE")},
    }


@pytest.mark.asyncio(loop_scope="module")
async def test_technicians_see_only_rooms_of_their_facility(server: Server, in_room: Participant) -> None:
    specialist = Participant(server.url, "central", "-", consume=False, token=await server.login("specialist"))
    await specialist.join()
    try:
        _, everything = await server.get("/api/rooms", user="admin")
        assert {r["id"] for r in everything["rooms"]} >= {"matrix", "central"}
        _, scoped = await server.get("/api/rooms", user="technician")
        assert "matrix" in {r["id"] for r in scoped["rooms"]} and "central" not in {r["id"] for r in scoped["rooms"]}
        assert (await server.get("/api/rooms/central", user="technician"))[0] == 404
        assert (await server.get("/api/rooms/central", user="admin"))[0] == 200
    finally:
        await specialist.leave()


# ---------------------------------------------------------------------------------------------------- login


async def test_wrong_username_and_wrong_password_look_the_same(server: Server) -> None:
    wrong_password = await http("POST", server.url + "/api/login", None, {"username": "quantri", "password": "x" * 9})
    unknown_user = await http("POST", server.url + "/api/login", None, {"username": "nobody", "password": PASSWORD})
    assert wrong_password[0] == unknown_user[0] == 401
    assert (
        wrong_password[2]
        == unknown_user[2]
        == {"error": {"code": "unauthorized", "message": "wrong username or password"}}
    )
    for bad in ({"username": "quantri"}, {"username": 1, "password": "x"}, "not json", None):
        status, _, answer, _ = await http("POST", server.url + "/api/login", None, bad)
        assert status == 400 and answer["error"]["code"] == "invalid-payload"


async def test_login_answers_token_user_and_expiry(server: Server) -> None:
    status, text, answer, _ = await http(
        "POST", server.url + "/api/login", None, {"username": " PGS.Tim ", "password": PASSWORD}
    )
    assert status == 200 and "argon2" not in text
    assert answer["user"]["username"] == "pgs.tim" and answer["user"]["specialties"] == ["tim-mach"]
    expires = datetime.datetime.fromisoformat(answer["expiresAt"])
    assert abs(expires - datetime.datetime.now(datetime.UTC) - TTL) < datetime.timedelta(seconds=5)
    assert TokenIssuer(SECRET.encode(), TTL).verify(answer["token"]).role == "doctor"


async def test_login_throttle_locks_a_username_from_an_address(tmp_path: Path) -> None:
    srv = Server(tmp_path)
    srv.start()
    try:
        url = srv.url + "/api/login"
        for _ in range(MAX_FAILURES):
            assert (await http("POST", url, None, {"username": "bs.huyen", "password": "doan-sai-1"}))[0] == 401
        # locked now: even the right password is refused, without being checked
        status, _, answer, headers = await http("POST", url, None, {"username": "bs.huyen", "password": PASSWORD})
        assert status == 429 and answer["error"]["code"] == "too-many-attempts"
        assert 0 < int(headers["Retry-After"]) <= LOCKOUT_SECONDS
        # another account from the same address is not affected
        assert (await http("POST", url, None, {"username": "ktv.lan", "password": PASSWORD}))[0] == 200
    finally:
        srv.stop()


def test_throttle_lockout_expires_and_success_resets() -> None:
    now = [1000.0]
    throttle = LoginThrottle(max_failures=3, lockout_seconds=30, clock=lambda: now[0])
    key = ("bs.huyen", "127.0.0.1")
    assert [throttle.begin(key) for _ in range(3)] == [0, 0, 0]
    assert throttle.begin(key) == 30
    now[0] += 29.5
    assert throttle.begin(key) == pytest.approx(0.5)
    now[0] += 1
    assert throttle.begin(key) == 0  # lockout over: attempts again
    throttle.succeeded(key)
    assert [throttle.begin(key) for _ in range(2)] == [0, 0]  # the count started again after the success
    now[0] += 3600
    assert [throttle.begin(key) for _ in range(2)] == [0, 0]  # old failures are forgotten


# ------------------------------------------------------------------------------------------------ socket.io


class Connection:
    """A raw socket.io client that records what a refused connection was told."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.sio = socketio.AsyncClient(reconnection=False)
        self.refusal: dict[str, Any] | None = None  # {"message", "data": {"code", "message"}}
        self.errors: list[dict[str, Any]] = []
        self.sio.on("connect_error", self._refused)
        self.sio.on("error", self.errors.append)

    async def _refused(self, data: Any) -> None:
        self.refusal = data

    async def open(self, token: str | None, in_query: bool = False) -> bool:
        url = self.server.url + (f"?token={token}" if in_query and token else "")
        auth = {"token": token} if token and not in_query else None
        try:
            await self.sio.connect(url, transports=["websocket"], auth=auth, wait_timeout=10)
        except socketio.exceptions.ConnectionError:
            return False
        return True

    async def close(self) -> None:
        await self.sio.disconnect()


closed = server_fixture("closed", {"HOICHAN_AUTH__ALLOW_GUESTS": "false"})  # production-like: no guests


@pytest.mark.parametrize("guests", ["allowed", "refused"])
@pytest.mark.parametrize("caller", CALLERS)
async def test_socket_connect_matrix(server: Server, closed: Server, guests: str, caller: str) -> None:
    srv = server if guests == "allowed" else closed
    admitted = caller in ROLES or (caller in ("none", "guest") and guests == "allowed")
    token = await token_for(srv, caller)
    for in_query in (False, True):
        connection = Connection(srv)
        assert await connection.open(token, in_query) is admitted
        if admitted:
            await connection.close()
        else:
            assert connection.refusal is not None and connection.refusal["data"]["code"] == "unauthorized"
    if not admitted:  # a refused connection had no chance to change anything
        assert (await srv.get("/api/rooms", user="admin"))[1] == {"rooms": []} or guests == "allowed"


@pytest.mark.parametrize("role", ["guest", *ROLES])
async def test_every_event_works_for_every_participant_role(server: Server, role: str) -> None:
    """join, answer, candidate, media-state, offer, restart-media and leave, each doing its job, for each role."""
    room = f"events-{role}"
    token = None if role == "guest" else await server.login(role)
    actor = Participant(server.url, room, "Khách mời", "Nhà thuốc", tracks=[PatternVideoTrack()], token=token)
    watcher = Participant(server.url, room, "Người xem", consume=True, tracks=[ToneAudioTrack()])
    try:
        await actor.join()  # join
        await watcher.join()
        await actor.wait_negotiated()  # answer
        assert actor.id is not None
        await wait_for(lambda: (v := watcher.video_from(actor.id or "")) is not None and v.frames > 5, timeout=15)

        assert await actor.sio.call("candidate", {"candidate": ""}, timeout=10) == {"ok": True}
        assert await actor.sio.call("media-state", {"audioMuted": True, "videoOff": False}) == {"ok": True}
        await wait_for(lambda: watcher.peers.get(actor.id or "", {}).get("audioMuted") is True, timeout=5)

        assert actor.pc is not None
        await actor.pc.setLocalDescription(await actor.pc.createOffer())
        answers: list[Any] = []
        actor.sio.on("answer", answers.append)
        assert await actor.sio.call("offer", {"sdp": actor.pc.localDescription.sdp}, timeout=10) == {"ok": True}
        await wait_for(lambda: bool(answers), timeout=5)
        await actor.pc.setRemoteDescription(type(actor.pc.localDescription)(sdp=answers[0]["sdp"], type="answer"))

        offers = actor.offers
        await actor.restart_media()  # restart-media
        await wait_for(lambda: actor.offers > offers, timeout=10)

        assert await actor.sio.call("leave", {}, timeout=10) == {"ok": True}
        await wait_for(lambda: actor.id not in watcher.peers, timeout=5)
        assert actor.errors == [] and watcher.errors == []
    finally:
        await asyncio.gather(actor.leave(), watcher.leave())


async def test_a_signed_in_participant_is_who_the_account_says(server: Server) -> None:
    doctor = Participant(server.url, "spoof", "Giám đốc Sở Y tế", "bv-bach-mai", consume=False)
    doctor.token = await server.login("doctor")
    guest = Participant(server.url, "spoof", "Người nhà", "Bản Mường Tè", consume=False)
    try:
        await doctor.join()
        await guest.join()
        seen = guest.peers[doctor.id or ""]
        assert (seen["name"], seen["facility"], seen["role"]) == ("BS. Giàng A Páo", "ttyt-muong-te", "doctor")
        _, room = await server.get("/api/rooms/spoof", user="admin")
        assert {(p["name"], p["facility"], p["role"]) for p in room["participants"]} == {
            ("BS. Giàng A Páo", "ttyt-muong-te", "doctor"),
            ("Người nhà", "Bản Mường Tè", "guest"),
        }
    finally:
        await asyncio.gather(doctor.leave(), guest.leave())


async def test_a_guest_must_give_a_name(server: Server) -> None:
    connection = Connection(server)
    assert await connection.open(None)
    ack = await connection.sio.call("join", {"room": "nameless"}, timeout=10)
    assert ack["ok"] is False and ack["error"]["code"] == "invalid-payload" and "name" in ack["error"]["message"]
    await connection.close()
    assert (await server.get("/api/rooms/nameless", user="admin"))[0] == 404


async def test_resuming_someone_elses_seat_is_forbidden_and_changes_nothing(server: Server) -> None:
    doctor = Connection(server)
    assert await doctor.open(await server.login("doctor"))
    ack = await doctor.sio.call("join", {"room": "seat"}, timeout=10)
    assert ack["ok"]
    for thief_role in ("guest", "technician"):
        thief = Connection(server)
        assert await thief.open(None if thief_role == "guest" else await server.login(thief_role))
        stolen = await thief.sio.call("join", {"room": "seat", "resume": ack["resumeToken"]}, timeout=10)
        assert stolen["ok"] is False and stolen["error"]["code"] == "forbidden"
        assert thief.errors[-1]["code"] == "forbidden"
        await thief.close()
    # the doctor still holds the seat, on the same connection
    assert await doctor.sio.call("media-state", {"audioMuted": False, "videoOff": True}, timeout=10) == {"ok": True}
    _, room = await server.get("/api/rooms/seat", user="admin")
    assert [(p["name"], p["videoOff"]) for p in room["participants"]] == [("BS. Giàng A Páo", True)]
    await doctor.close()


# ------------------------------------------------------------------------------------------------ revocation


def hoichan_user(server: Server, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """``hoichan user ...`` on the running server's own store, as an admin on that machine would."""
    env = {**os.environ, **{k: v for k, v in server.env.items() if k.startswith("HOICHAN_")}}
    return subprocess.run(
        [sys.executable, "-m", "signaling.cli", "user", *args],
        cwd=ROOT,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_password_change_and_removal_take_effect_at_once(server: Server) -> None:
    added = hoichan_user(
        server, "add", "bs.moi", "--role", "doctor", "--facility", "tyt-xa-ka-lang", "--name", "BS. Lý Văn Mới",
        "--password-stdin", stdin="mat-khau-dau-tien\n",
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    login = {"username": "bs.moi", "password": "mat-khau-dau-tien"}
    status, _, answer, _ = await http("POST", server.url + "/api/login", None, login)
    assert status == 200
    first = answer["token"]
    assert (await http("GET", server.url + "/api/me", first))[0] == 200

    assert hoichan_user(server, "passwd", "bs.moi", "--password-stdin", stdin="mat-khau-thu-hai\n").returncode == 0
    assert (await http("GET", server.url + "/api/me", first))[0] == 401  # signed out everywhere
    connection = Connection(server)
    assert not await connection.open(first) and connection.refusal["data"]["code"] == "unauthorized"  # type: ignore[index]
    assert (await http("POST", server.url + "/api/login", None, login))[0] == 401
    status, _, answer, _ = await http(
        "POST", server.url + "/api/login", None, {**login, "password": "mat-khau-thu-hai"}
    )
    assert status == 200
    second = answer["token"]

    assert hoichan_user(server, "remove", "bs.moi").returncode == 0
    assert (await http("GET", server.url + "/api/me", second))[0] == 401
    assert (await http("POST", server.url + "/api/login", None, {**login, "password": "mat-khau-thu-hai"}))[0] == 401


# ---------------------------------------------------------------------------------------------- the lobby

CONSULT = {"specialty": "tim-mach", "urgency": "routine", "summary": "Đau ngực cấp"}
# Each caller's attempts, in order, against a consult that the district doctor ("doctor") requested and that rings
# the central doctor ("specialist"): the expected answer is "ok" or the error code. Refused attempts change nothing.
LOBBY_MATRIX: dict[str, list[tuple[str, str]]] = {
    "guest": [(e, "forbidden") for e in ("lobby-enter", "duty", "consult-request", "consult-cancel",
                                          "consult-accept", "consult-decline", "consult-invite")],  # fmt: skip
    "technician": [("lobby-enter", "ok")] + [(e, "forbidden") for e in (
        "duty", "consult-request", "consult-cancel", "consult-accept", "consult-decline", "consult-invite")],
    "admin": [("lobby-enter", "ok")] + [(e, "forbidden") for e in (
        "duty", "consult-request", "consult-cancel", "consult-accept", "consult-decline", "consult-invite")],
    "other_doctor": [("lobby-enter", "ok"), ("duty", "forbidden"), ("consult-cancel", "forbidden"),
                     ("consult-accept", "forbidden"), ("consult-decline", "forbidden"),
                     ("consult-invite", "forbidden")],  # fmt: skip
    "doctor": [("lobby-enter", "ok"), ("duty", "forbidden"), ("consult-accept", "forbidden"),
               ("consult-decline", "forbidden"), ("consult-invite", "forbidden"), ("consult-cancel", "ok")],
    "specialist": [("lobby-enter", "ok"), ("consult-request", "forbidden"), ("consult-cancel", "forbidden"),
                   ("consult-invite", "forbidden"), ("duty", "ok"), ("consult-accept", "ok"),
                   ("consult-invite", "ok")],  # fmt: skip
}

@pytest.mark.parametrize("caller", list(LOBBY_MATRIX))
async def test_lobby_event_matrix(server: Server, caller: str) -> None:
    district = LobbyClient(server.url, await server.login("doctor"), ACCOUNTS["doctor"]["username"])
    central = LobbyClient(server.url, await server.login("specialist"), ACCOUNTS["specialist"]["username"])
    await district.connect()
    await central.connect()
    await district.enter()
    await central.enter(on_duty=True)
    consult = (await district.call("consult-request", CONSULT))["consult"]
    await central.wait(lambda: central.my_ring(consult["id"]) is not None)
    actor = {"doctor": district, "specialist": central}.get(caller)
    if actor is None:
        actor = LobbyClient(server.url, None if caller == "guest" else await server.login(caller))
        await actor.connect()
    payloads = {
        "lobby-enter": {},
        "duty": {"onDuty": True},
        "consult-request": CONSULT,
        "consult-cancel": {"consult": consult["id"]},
        "consult-accept": {"consult": consult["id"]},
        "consult-decline": {"consult": consult["id"]},
        "consult-invite": {"consult": consult["id"], "username": ACCOUNTS["pediatrician"]["username"]},
    }
    try:
        for event, expected in LOBBY_MATRIX[caller]:
            _, before = await server.get(f"/api/consults/{consult['id']}", user="admin")
            answer = await actor.call(event, payloads[event])
            if expected == "ok":
                assert answer["ok"] is True, (event, answer)
                continue
            assert answer["ok"] is False and answer["error"]["code"] == expected, (event, answer)
            assert actor.errors[-1]["code"] == expected
            _, after = await server.get(f"/api/consults/{consult['id']}", user="admin")
            assert after == before, event  # refused: the consult and its log are as they were
            _, consults = await server.get("/api/consults", user="admin")
            assert consults["consults"][0]["id"] == consult["id"]  # no new consult either
    finally:
        if (await server.get(f"/api/consults/{consult['id']}", user="admin"))[1]["outcome"] == "open":
            await district.call("consult-cancel", {"consult": consult["id"]})
        await central.call("duty", {"onDuty": False})
        for client in {district, central, actor}:
            await client.close()


async def test_consult_details_are_for_its_parties_and_facilities(server: Server) -> None:
    district = LobbyClient(server.url, await server.login("doctor"), ACCOUNTS["doctor"]["username"])
    await district.connect()
    await district.enter()
    consult = (await district.call("consult-request", {**CONSULT, "summary": "Chi tiết"}))["consult"]
    await district.call("consult-cancel", {"consult": consult["id"]})
    await district.close()
    path = f"/api/consults/{consult['id']}"
    seen = {caller: (await server.get(path, user=caller))[0]
            for caller in ("admin", "doctor", "technician", "specialist", "other_doctor", "other_technician")}
    assert seen == {"admin": 200, "doctor": 200, "technician": 200, "specialist": 404, "other_doctor": 404,
                    "other_technician": 404}  # fmt: skip
    listed = {caller: [c["id"] for c in (await server.get("/api/consults", user=caller))[1]["consults"]]
              for caller in ("admin", "doctor", "technician", "other_doctor", "other_technician")}
    assert consult["id"] in listed["admin"] and consult["id"] in listed["doctor"]
    assert consult["id"] in listed["technician"]  # the technician's own facility called
    assert consult["id"] not in listed["other_doctor"] and consult["id"] not in listed["other_technician"]
    for bad in ("expired", "forged", "revoked", "garbage", "none"):
        status, _, _, _ = await http("GET", server.url + path, await token_for(server, bad))
        assert status == 401
