"""The admin recordings API on a real server: who may do what, no file outside a recording ever, HTTP ranges, the zip,
hold and delete, the combined file, and the audit log that sees all of it (refused attempts included)."""

from __future__ import annotations

import asyncio
import csv
import datetime
import hashlib
import io
import json
import os
import subprocess
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from recordings_support import CLIP_SECONDS, RecordingMaker
from support import ACCOUNTS, SECRET, Server, wait_for
from yarl import URL

from signaling.accounts import Account
from signaling.recordings.audit import FIELDS
from signaling.tokens import TokenIssuer

TTL = datetime.timedelta(hours=12)
REFUSED = {"none": 401, "guest": 401, "expired": 401, "forged": 401, "doctor": 403, "technician": 403}
SECRET_TEXT = "nội dung bí mật ngoài thư mục bản ghi"


class Reply:
    def __init__(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.status, self.body, self.headers = status, body, headers

    def json(self) -> Any:
        return json.loads(self.body)


async def http(
    server: Server, method: str, path: str, token: str | None = None, *, json_body: Any = None,
    headers: dict[str, str] | None = None,
) -> Reply:
    """One request; ``path`` is sent exactly as written (``encoded=True``: no client-side ``..`` clean-up)."""
    sent = {**(headers or {}), **({"Authorization": f"Bearer {token}"} if token else {})}
    async with aiohttp.ClientSession() as session:
        url = URL(server.url + path, encoded=True)
        async with session.request(method, url, headers=sent, json=json_body, allow_redirects=False) as response:
            return Reply(response.status, await response.read(), dict(response.headers))


def account(role: str) -> Account:
    a = ACCOUNTS[role]
    return Account(a["username"], a["display_name"], a["role"], a["facility"], tuple(a.get("specialties", ())), 0)


async def token_for(server: Server, caller: str) -> str | None:
    genuine = TokenIssuer(SECRET.encode(), TTL)
    if caller == "none":
        return None
    if caller == "guest":  # a genuine signature, but no such account: guests never hold tokens
        return genuine.issue(Account("khach", "Khách", "guest", "-", (), 0))  # type: ignore[arg-type]
    if caller == "expired":
        return genuine.issue(account("admin"), now=datetime.datetime.now(datetime.UTC) - 2 * TTL)
    if caller == "forged":
        return TokenIssuer(b"another key that is not the server's own key", TTL).issue(account("admin"))
    return await server.login(caller)


@pytest.fixture
def maker(server: Server, clips: dict[str, Path]) -> RecordingMaker:
    return RecordingMaker(server.tmp / "data" / "recordings", clips)


def audit_log(server: Server) -> list[dict[str, Any]]:
    path = server.tmp / "data" / "audit.log"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def routes(rid: str, track: str) -> Iterator[tuple[str, str, Any]]:
    base = f"/api/recordings/{rid}"
    yield "GET", "/api/recordings", None
    yield "GET", base, None
    yield "GET", f"{base}/tracks/{track}", None
    yield "GET", f"{base}/combined", None
    yield "GET", f"{base}/zip", None
    yield "POST", f"{base}/combine", None
    yield "PUT", f"{base}/hold", {"hold": True}
    yield "DELETE", base, {"confirm": rid}
    yield "GET", "/api/audit?format=csv", None


# ------------------------------------------------------------------------------------------------- access


@pytest.mark.parametrize("caller", list(REFUSED))
async def test_only_admins_get_in(server: Server, maker: RecordingMaker, caller: str) -> None:
    rid = maker.make()
    track = maker.track(rid)
    before = snapshot(maker.root / rid)
    audited = len(audit_log(server))
    token = await token_for(server, caller)
    for method, path, body in routes(rid, track):
        reply = await http(server, method, path, token, json_body=body)
        assert reply.status == REFUSED[caller], (method, path, reply.status, reply.body[:200])
        assert reply.json()["error"]["code"] == ("unauthorized" if REFUSED[caller] == 401 else "forbidden")
        if method == "GET" and "tracks" in path and token:  # and not through the query either
            query = await http(server, method, f"{path}?token={token}")
            assert query.status == REFUSED[caller]
    assert snapshot(maker.root / rid) == before  # nothing held, combined, deleted or written
    entries = audit_log(server)[audited:]
    assert len(entries) == 9 + (1 if token else 0)  # every refused attempt is audited, with what it tried
    assert {e["status"] for e in entries} == {REFUSED[caller]}
    assert all(e["remote"] == "127.0.0.1" and e["detail"].split()[0] in ("GET", "PUT", "POST", "DELETE")
               for e in entries)
    if caller in ("doctor", "technician"):  # a genuine token of the wrong role names who tried
        assert {(e["actor"], e["role"]) for e in entries} == {(ACCOUNTS[caller]["username"], caller)}
    else:
        assert {e["actor"] for e in entries} == {None}
    assert not any(token and token in json.dumps(e) for e in entries)  # never the token itself


async def test_the_token_in_the_query_works_only_for_media(server: Server, maker: RecordingMaker) -> None:
    rid = maker.make()
    track = maker.track(rid)
    admin = await server.login("admin")
    assert (await http(server, "GET", f"/api/recordings/{rid}/tracks/{track}?token={admin}")).status == 200
    assert (await http(server, "GET", f"/api/recordings/{rid}/zip?token={admin}")).status == 200
    assert (await http(server, "GET", f"/api/recordings?token={admin}")).status == 401
    assert (await http(server, "GET", f"/api/recordings/{rid}?token={admin}")).status == 401
    assert (await http(server, "GET", f"/api/audit?token={admin}")).status == 401
    assert (await http(server, "DELETE", f"/api/recordings/{rid}?token={admin}", json_body={"confirm": rid})).status \
        == 401
    assert (maker.root / rid).is_dir()


# ---------------------------------------------------------------------------------------------- path tricks


async def test_paths_outside_a_recording_are_never_served(server: Server, maker: RecordingMaker,
                                                          tmp_path: Path) -> None:
    rid = maker.make()
    directory = maker.root / rid
    secret = server.tmp / "secret.txt"
    secret.write_text(SECRET_TEXT)
    (directory / "notes.txt").write_text(SECRET_TEXT)
    symlinked = maker.track(rid, "audio", person=1)  # listed in the manifest, but now a link to the secret
    (directory / symlinked).unlink()
    (directory / symlinked).symlink_to(secret)
    linked_recording = f"{rid[:-6]}zzzzzz"
    (maker.root / linked_recording).symlink_to(directory, target_is_directory=True)
    admin = await server.login("admin")
    base = f"/api/recordings/{rid}"
    attempts = [
        f"{base}/tracks/..%2F..%2F..%2Fsecret.txt",
        f"{base}/tracks/%2e%2e%2f%2e%2e%2f%2e%2e%2fsecret.txt",
        f"{base}/tracks/%2e%2e/%2e%2e/%2e%2e/secret.txt",
        f"{base}/tracks/../../../secret.txt",
        f"{base}/tracks/..%5C..%5Csecret.txt",
        f"{base}/tracks/%2Fetc%2Fpasswd",
        f"{base}/tracks/{secret}",
        f"{base}/tracks/notes.txt",
        f"{base}/tracks/manifest.json",
        f"{base}/tracks/admin.json",
        f"{base}/tracks/{symlinked}",
        f"{base}/tracks/{symlinked}%00.webm",
        f"/api/recordings/..%2F..%2F/tracks/{symlinked}",
        "/api/recordings/%2e%2e/tracks/secret.txt",
        f"/api/recordings/{linked_recording}",
        f"/api/recordings/{linked_recording}/tracks/{maker.track(rid)}",
        f"/api/recordings/{linked_recording}/zip",
        f"/api/recordings/{rid[:-6]}aaaaaa",  # a guessed id
        f"/api/recordings/{rid[:-6]}aaaaaa/tracks/{maker.track(rid)}",
        "/api/recordings/..%2F..%2Fetc/zip",
        f"/api/recordings/{rid}/combined",  # none made yet
    ]
    for path in attempts:
        reply = await http(server, "GET", path, admin)
        assert reply.status in (403, 404), (path, reply.status)
        by_query = await http(server, "GET", f"{path}?token={admin}")  # 401 where the query token is not taken
        assert by_query.status in (401, 403, 404), (path, by_query.status)
        for body in (reply.body, by_query.body):
            assert SECRET_TEXT.encode() not in body and b"root:" not in body, path
    listed = (await http(server, "GET", "/api/recordings", admin)).json()["recordings"]
    assert linked_recording not in {r["id"] for r in listed}
    zipped = await http(server, "GET", f"{base}/zip", admin)
    assert zipped.status == 200 and SECRET_TEXT.encode() not in zipped.body  # the link is left out of the export
    assert symlinked not in " ".join(zipfile.ZipFile(io.BytesIO(zipped.body)).namelist())


# ---------------------------------------------------------------------------------------------------- ranges


async def test_tracks_play_with_http_ranges(server: Server, maker: RecordingMaker) -> None:
    rid = maker.make()
    track = maker.track(rid)
    data = (maker.root / rid / track).read_bytes()
    size = len(data)
    admin = await server.login("admin")
    path = f"/api/recordings/{rid}/tracks/{track}"

    async def ranged(spec: str | None) -> Reply:
        return await http(server, "GET", path, admin, headers={"Range": spec} if spec else None)

    whole = await ranged(None)
    assert whole.status == 200 and whole.body == data
    assert whole.headers["Content-Type"] == "video/webm" and whole.headers["Accept-Ranges"] == "bytes"
    assert whole.headers["Cache-Control"] == "no-store"
    assert whole.headers["Content-Disposition"].startswith("inline")
    first = await ranged("bytes=0-99")
    assert (first.status, first.body, first.headers["Content-Range"]) == (206, data[:100], f"bytes 0-99/{size}")
    middle = await ranged(f"bytes={size // 2}-{size // 2 + 999}")
    assert middle.status == 206 and middle.body == data[size // 2 : size // 2 + 1000]
    suffix = await ranged("bytes=-100")
    assert (suffix.status, suffix.body, suffix.headers["Content-Range"]) == (
        206, data[-100:], f"bytes {size - 100}-{size - 1}/{size}")  # fmt: skip
    beyond = await ranged("bytes=999999999-")
    assert beyond.status == 416 and beyond.headers["Content-Range"] == f"bytes */{size}"
    assert (await ranged("bytes=abc")).status == 416
    download = await http(server, "GET", f"{path}?download=1", admin)
    assert download.headers["Content-Disposition"] == f'attachment; filename="{rid}-{track}"'
    audio = await http(server, "GET", f"/api/recordings/{rid}/tracks/{maker.track(rid, 'audio')}", admin)
    assert audio.headers["Content-Type"] == "audio/webm"
    details = [e["detail"] for e in audit_log(server) if e["file"] == track]
    assert details[-7:] == ["play", "play bytes=0-99", f"play bytes={size // 2}-{size // 2 + 999}",
                            "play bytes=-100", "play bytes=999999999-", "play bytes=abc", "download"]


# ------------------------------------------------------------------------------------------- list and view


async def test_list_filters_and_view(server: Server, maker: RecordingMaker) -> None:
    started = datetime.datetime(2025, 3, 14, 2, 0, tzinfo=datetime.UTC)
    rid = maker.make(started=started, consult_id="hc-2025-0314",
                     people=(("BS. Hờ A Sùng", "TTYT huyện Sìn Hồ", 0.0),))
    admin = await server.login("admin")

    async def ids(query: str) -> set[str]:
        reply = await http(server, "GET", f"/api/recordings?{query}", admin)
        assert reply.status == 200, reply.body
        return {r["id"] for r in reply.json()["recordings"]}

    assert rid in await ids("")
    assert await ids("from=2025-03-14&to=2025-03-14") == {rid}
    assert await ids("from=2025-03-14T09:00:00%2B07:00&to=2025-03-14T09:00:01%2B07:00") == {rid}  # Vietnam time
    assert rid not in await ids("from=2025-03-15")
    assert await ids("consult=hc-2025-0314") == {rid}
    assert await ids("facility=s%C3%ACn%20h%E1%BB%93") == {rid}  # "sìn hồ", any case
    assert await ids("participant=H%E1%BB%9D%20A") == {rid}
    assert await ids("consult=hc-2025-0314&facility=B%E1%BA%A1ch%20Mai") == set()
    assert (await http(server, "GET", "/api/recordings?from=yesterday", admin)).status == 400

    view = (await http(server, "GET", f"/api/recordings/{rid}", admin)).json()
    assert view["manifest"] == maker.manifest(rid)  # exactly as media wrote it
    assert view["admin"]["hold"] is False and view["admin"]["combine"]["state"] == "none"
    assert view["combined_size"] is None and view["kept"] is None
    assert view["summary"]["duration"] == CLIP_SECONDS and view["summary"]["tracks"] == 2


# ------------------------------------------------------------------------------------------------------ zip


async def test_zip_holds_the_manifest_and_every_track(server: Server, maker: RecordingMaker) -> None:
    rid = maker.make()
    admin = await server.login("admin")
    reply = await http(server, "GET", f"/api/recordings/{rid}/zip?token={admin}")
    assert reply.status == 200 and reply.headers["Content-Type"] == "application/zip"
    assert int(reply.headers["Content-Length"]) == len(reply.body)
    assert reply.headers["Content-Disposition"] == f'attachment; filename="{rid}.zip"'
    archive = zipfile.ZipFile(io.BytesIO(reply.body))
    assert archive.testzip() is None
    manifest = maker.manifest(rid)
    assert sorted(archive.namelist()) == sorted(
        [f"{rid}/manifest.json", *(f"{rid}/{t['file']}" for t in manifest["tracks"])]
    )
    assert archive.read(f"{rid}/manifest.json") == (maker.root / rid / "manifest.json").read_bytes()
    for track in manifest["tracks"]:
        assert hashlib.sha256(archive.read(f"{rid}/{track['file']}")).hexdigest() == track["sha256"]


# ------------------------------------------------------------------------------------------ hold and delete


async def test_hold_blocks_delete_and_delete_needs_confirmation(server: Server, maker: RecordingMaker) -> None:
    rid = maker.make()
    admin = await server.login("admin")
    base = f"/api/recordings/{rid}"
    held = await http(server, "PUT", f"{base}/hold", admin, json_body={"hold": True})
    assert held.status == 200 and held.json()["admin"]["hold"] is True
    assert held.json()["admin"]["hold_by"] == ACCOUNTS["admin"]["username"]
    refused = await http(server, "DELETE", base, admin, json_body={"confirm": rid})
    assert refused.status == 409 and "hold" in refused.json()["error"]["message"]
    view = (await http(server, "GET", base, admin)).json()
    assert view["kept"] == "hold"
    listed = (await http(server, "GET", "/api/recordings", admin)).json()["recordings"]
    assert next(r for r in listed if r["id"] == rid)["hold"] is True

    assert (await http(server, "PUT", f"{base}/hold", admin, json_body={"hold": "yes"})).status == 400
    assert (await http(server, "PUT", f"{base}/hold", admin, json_body={"hold": False})).status == 200
    for body in (None, {}, {"confirm": "yes"}, {"confirm": rid[:-1]}, {"confirm": [rid]}):
        assert (await http(server, "DELETE", base, admin, json_body=body)).status == 400, body
    assert (maker.root / rid).is_dir()
    deleted = await http(server, "DELETE", base, admin, json_body={"confirm": rid})
    assert deleted.status == 200 and deleted.json() == {"deleted": rid}
    assert not (maker.root / rid).exists()
    assert (await http(server, "GET", base, admin)).status == 404
    assert (await http(server, "DELETE", base, admin, json_body={"confirm": rid})).status == 404

    running = maker.make(state="recording")
    refused = await http(server, "DELETE", f"/api/recordings/{running}", admin, json_body={"confirm": running})
    assert refused.status == 409 and (maker.root / running).is_dir()


# ------------------------------------------------------------------------------------------------- combine


async def test_combined_file_via_the_api(server: Server, maker: RecordingMaker) -> None:
    rid = maker.make()
    admin = await server.login("admin")
    base = f"/api/recordings/{rid}"
    started = await http(server, "POST", f"{base}/combine", admin)
    assert started.status == 202 and started.json()["admin"]["combine"]["state"] == "queued"
    assert (await http(server, "POST", f"{base}/combine", admin)).status == 409  # one job per recording at a time
    states: list[tuple[str, float]] = []

    async def state() -> dict[str, Any]:
        job = (await http(server, "GET", base, admin)).json()["admin"]["combine"]
        states.append((job["state"], job["progress"]))
        return job

    for _ in range(600):
        if (await state())["state"] in ("done", "failed"):
            break
        await asyncio.sleep(0.1)
    job = await state()
    assert job["state"] == "done", job
    assert job["progress"] == 100 and job["requested_by"] == ACCOUNTS["admin"]["username"]
    assert (await http(server, "GET", base, admin)).json()["combined_size"] > 0

    combined = await http(server, "GET", f"{base}/combined?token={admin}")
    assert combined.status == 200 and combined.headers["Content-Type"] == "video/webm"
    assert (await http(server, "GET", f"{base}/combined", admin, headers={"Range": "bytes=0-9"})).status == 206
    out = server.tmp / "combined.webm"
    out.write_bytes(combined.body)
    probe = json.loads(subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "format=duration:stream=codec_type", "-of", "json", str(out)],
        check=True, capture_output=True, text=True).stdout)  # fmt: skip
    assert sorted(s["codec_type"] for s in probe["streams"]) == ["audio", "video"]
    assert float(probe["format"]["duration"]) == pytest.approx(1.5 + CLIP_SECONDS, abs=0.25)

    running = maker.make(state="recording")
    assert (await http(server, "POST", f"/api/recordings/{running}/combine", admin)).status == 409


# --------------------------------------------------------------------------------------------------- audit


async def test_audit_log_records_who_what_when_where(server: Server, maker: RecordingMaker) -> None:
    rid = maker.make()
    track = maker.track(rid)
    admin = await server.login("admin")
    base = f"/api/recordings/{rid}"
    mark = datetime.datetime.now(datetime.UTC)
    await http(server, "GET", "/api/recordings?facility=Bach", admin)
    await http(server, "GET", base, admin)
    await http(server, "GET", f"{base}/tracks/{track}?download=1", admin)
    await http(server, "GET", f"{base}/zip", admin)
    await http(server, "PUT", f"{base}/hold", admin, json_body={"hold": True})
    await http(server, "PUT", f"{base}/hold", admin, json_body={"hold": False})
    await http(server, "DELETE", base, admin, json_body={"confirm": rid})
    await http(server, "GET", base, await server.login("doctor"))

    reply = await http(server, "GET", f"/api/audit?recording={rid}", admin)
    assert reply.status == 200
    entries = list(reversed(reply.json()["entries"]))  # newest first → oldest first
    assert [(e["action"], e["status"]) for e in entries] == [
        ("view", 200), ("track", 200), ("export", 200), ("hold", 200), ("hold", 200), ("delete", 200), ("view", 403),
    ]
    username = ACCOUNTS["admin"]["username"]
    for e in entries[:-1]:
        assert (e["actor"], e["role"], e["remote"], e["recording"]) == (username, "admin", "127.0.0.1", rid)
        assert mark <= datetime.datetime.fromisoformat(e["at"]) <= datetime.datetime.now(datetime.UTC)
    assert entries[1]["detail"] == "download" and entries[1]["file"] == track
    assert [entries[3]["detail"], entries[4]["detail"]] == ["on", "off"]
    assert (entries[-1]["actor"], entries[-1]["role"]) == (ACCOUNTS["doctor"]["username"], "doctor")
    everything = (await http(server, "GET", "/api/audit?limit=1000", admin)).json()["entries"]
    assert any(e["action"] == "list" and e["detail"] == "facility=Bach" for e in everything)

    exported = await http(server, "GET", "/api/audit?format=csv", admin)
    assert exported.status == 200 and exported.headers["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(exported.body.decode())))
    assert tuple(rows[0]) == FIELDS
    assert [r["action"] for r in rows if r["recording"] == rid] == [e["action"] for e in entries]
    assert rows[-1]["action"] == "audit" and rows[-1]["status"] == "200"  # reading the log is itself audited
    assert (await http(server, "GET", "/api/audit?format=xml", admin)).status == 400


# ------------------------------------------------------------------------------------------------ retention


def test_retention_deletes_expired_recordings_at_start(tmp_path: Path, clips: dict[str, Path]) -> None:
    server = Server(tmp_path, env={"HOICHAN_RECORDING__RETENTION_DAYS": "30"})
    maker = RecordingMaker(tmp_path / "data" / "recordings", clips)
    now = datetime.datetime.now(datetime.UTC)
    expired = maker.make(started=now - datetime.timedelta(days=40))
    recent = maker.make(started=now - datetime.timedelta(days=29))
    held = maker.make(started=now - datetime.timedelta(days=400))
    (maker.root / held / "admin.json").write_text(json.dumps({"hold": True}))
    server.start()
    try:
        asyncio.run(wait_for(lambda: not (maker.root / expired).exists(), timeout=20))
        assert sorted(os.listdir(maker.root)) == sorted([recent, held])

        def entries_now() -> list[dict[str, Any]]:
            return [e for e in audit_log(server) if e["action"] == "retention-delete"]

        asyncio.run(wait_for(lambda: entries_now(), timeout=5))  # the audit line follows the deletion
        entries = entries_now()
        assert [(e["actor"], e["recording"], e["status"]) for e in entries] == [("system", expired, 200)]
    finally:
        server.stop()
