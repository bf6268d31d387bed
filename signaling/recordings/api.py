"""The admin's recordings API and page: list, view, play (HTTP Range), download, export, hold, combine, delete, audit.

Every route is ``require("admin")`` and every request to it, granted or refused, leaves one audit entry written
before any byte of the answer (refused ones too: repeated probing is what an inspector wants to see). Ids and file
names go through ``files`` only; a name that is not a track listed in the manifest (or the combined file) is 404.

Media routes (track, combined, zip) also take the token as ``?token=``: a ``<video src>`` or a download link cannot
send an ``Authorization`` header, and fetching a long recording into a blob would forbid seeking and hold it all in
memory. Only those GET routes accept it; responses say ``Cache-Control: no-store`` and the server's
``Referrer-Policy: no-referrer`` keeps the URL out of other sites' logs.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import functools
import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web
from multidict import CIMultiDict
from pydantic import BaseModel, ConfigDict, ValidationError
from zipstream import ZipStream

from ..auth import AUTHENTICATOR, AuthError, error_response, identity_of, public, require
from ..config import Config
from .audit import AuditLog, AuditStore
from .catalogue import Catalogue, Filter
from .combine import Combiner, CombineRefused
from .jobs import JobClaims, deletion
from .files import COMBINED, MANIFEST, NotFound, RecordingFiles
from .retention import KEPT_BECAUSE, Retention, why_kept
from .state import AdminStates

__all__ = ["RECORDINGS", "Recordings", "add_routes"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
PAGE = Path(__file__).resolve().parents[2] / "web" / "admin" / "recordings.html"
_CHUNK = 1 << 20
_MAX_AUDIT_ROWS = 10_000
_NO_STORE = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


@dataclass(frozen=True)
class Recordings:
    """Everything the routes need, built once per application."""

    files: RecordingFiles
    catalogue: Catalogue
    states: AdminStates
    audit: AuditLog
    combiner: Combiner
    retention: Retention

    @classmethod
    def from_config(cls, config: Config, audit_store: AuditStore, claims: JobClaims) -> Recordings:
        files = RecordingFiles(config.recording.directory)
        catalogue = Catalogue(files)
        states = AdminStates(files)
        audit = AuditLog(audit_store)
        return cls(
            files, catalogue, states, audit, Combiner(catalogue, states, claims=claims),
            Retention(catalogue, states, audit, config.recording.retention_days, claims),
        )  # fmt: skip


RECORDINGS: web.AppKey[Recordings] = web.AppKey("recordings", Recordings)


class _Refused(Exception):
    """A request that is understood but not allowed now: ``status`` 400 or 409 with a ``code``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


# ----------------------------------------------------------------------------------------------- audit wrapper


def _admin_route(action: str, *, query_token: bool = False) -> Callable[[Handler], Handler]:
    """``require("admin")`` plus the audit entry; the handler may raise ``NotFound`` (404) or ``_Refused``."""

    def wrap(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def answer(request: web.Request) -> web.StreamResponse:
            try:
                return await handler(request)
            except NotFound:
                return error_response(404, "not-found", "no such recording or file")
            except _Refused as exc:
                return error_response(exc.status, exc.code, exc.message)

        guarded = require("admin")(answer)

        @functools.wraps(guarded)  # keeps require's access marker for the route check
        async def endpoint(request: web.Request) -> web.StreamResponse:
            if query_token:
                request = _token_from_query(request)
            try:
                response = await guarded(request)
            except Exception:
                await _record(request, action, 500)
                raise
            try:
                await _record(request, action, response.status)
            except BaseException:
                if isinstance(response, _DescriptorResponse):
                    response.release()
                raise  # unaudited access must not go ahead
            return response

        return endpoint

    return wrap


def _token_from_query(request: web.Request) -> web.Request:
    token = request.query.get("token")
    if token is None or "Authorization" in request.headers:
        return request
    headers = CIMultiDict(request.headers)
    headers["Authorization"] = f"Bearer {token}"
    return request.clone(headers=headers)


async def _record(request: web.Request, action: str, status: int) -> None:
    actor, role = _actor(request)
    refused = status in (401, 403)
    detail = f"{request.method} {request.path}" if refused else request.get(_DETAIL)  # never the query: a token
    info = request.match_info
    await request.app[RECORDINGS].audit.record(
        action, status, actor=actor, role=role, remote=request.remote,
        recording=info.get("id"), file=info.get("file"), detail=detail,
    )  # fmt: skip


def _actor(request: web.Request) -> tuple[str | None, str | None]:
    """Who asked: the admin ``require`` let in, or for a refused request the account behind a genuine token."""
    try:
        identity = identity_of(request)
    except KeyError:
        try:
            identity = request.app[AUTHENTICATOR].from_request(request)
        except AuthError:
            return None, None
    return identity.user_id, identity.role


_DETAIL = "recordings.audit_detail"


def _detail(request: web.Request, text: str | None) -> None:
    """What the audit entry should add about this request (filters, byte range, new hold)."""
    request[_DETAIL] = text


# ------------------------------------------------------------------------------------------------- responses


class _DescriptorResponse(web.FileResponse):
    """aiohttp's FileResponse (Range → 206, suffix ranges, 416, conditional requests) over a descriptor.

    It is given ``/proc/self/fd/N``: that names exactly the inode ``files`` opened without following links, so
    nothing can be swapped in between, and no ``.gz`` sibling is ever looked for next to it.
    """

    def __init__(self, fd: int, content_type: str, disposition: str) -> None:
        super().__init__(
            f"/proc/self/fd/{fd}",
            headers={"Content-Type": content_type, "Content-Disposition": disposition, **_NO_STORE},
        )
        self._fd = fd

    async def prepare(self, request: web.BaseRequest) -> Any:
        try:
            return await super().prepare(request)
        finally:
            self.release()

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def _disposition(request: web.Request, filename: str) -> str:
    kind = "attachment" if request.query.get("download") == "1" else "inline"
    return f'{kind}; filename="{filename}"'


async def _in_thread(chunks: Iterator[bytes]) -> AsyncIterator[bytes]:
    """Pull a blocking iterator (file reads) in a worker thread, one chunk at a time, so the loop never waits."""
    while (chunk := await asyncio.to_thread(next, chunks, None)) is not None:
        yield chunk


def _file_chunks(files: RecordingFiles, recording_id: str, name: str, size: int) -> Iterator[bytes]:
    """The first ``size`` bytes of a file (its size when the export began), read lazily."""
    fd = files.open(recording_id, name)
    try:
        offset = 0
        while offset < size and (chunk := os.pread(fd, min(_CHUNK, size - offset), offset)):
            offset += len(chunk)
            yield chunk
    finally:
        os.close(fd)


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, headers=_NO_STORE)


# --------------------------------------------------------------------------------------------------- handlers


def _when(value: str | None, end_of_day: bool) -> datetime.datetime | None:
    """``YYYY-MM-DD`` (a whole UTC day) or an ISO 8601 time (UTC unless it says otherwise)."""
    if not value:
        return None
    try:
        if len(value) == 10:
            day = datetime.datetime.combine(datetime.date.fromisoformat(value), datetime.time(), datetime.UTC)
            return day + datetime.timedelta(days=1, microseconds=-1) if end_of_day else day
        moment = datetime.datetime.fromisoformat(value)
    except ValueError:
        raise _Refused(400, "bad-request", f"not a date or time: {value[:40]}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=datetime.UTC)


@_admin_route("list")
async def list_recordings(request: web.Request) -> web.Response:
    q = request.query
    query = Filter(
        start=_when(q.get("from"), end_of_day=False),
        end=_when(q.get("to"), end_of_day=True),
        facility=q.get("facility") or None,
        consult=q.get("consult") or None,
        participant=q.get("participant") or None,
    )
    _detail(request, request.query_string or None)
    recordings = request.app[RECORDINGS]

    def rows() -> list[dict[str, Any]]:  # reads every manifest and admin.json: off the event loop
        found = []
        for manifest in recordings.catalogue.search(query):
            state = recordings.states.get(manifest.id)
            found.append({**manifest.summary(), "hold": state.hold, "combine": state.combine.model_dump(mode="json")})
        return found

    return _json({"recordings": await asyncio.to_thread(rows)})


@_admin_route("view")
async def get_recording(request: web.Request) -> web.Response:
    recordings = request.app[RECORDINGS]
    recording_id = request.match_info["id"]
    manifest = recordings.catalogue.get(recording_id)
    state = recordings.states.get(recording_id)
    try:
        combined: int | None = recordings.files.stat(recording_id, COMBINED).st_size
    except NotFound:
        combined = None
    return _json({
        "manifest": json.loads(recordings.files.read(recording_id, MANIFEST)),  # as media wrote it, every key
        "summary": manifest.summary(),
        "admin": state.model_dump(mode="json"),
        "combined_size": combined,
        "kept": why_kept(manifest, state),  # why it cannot be deleted now: recording | hold | combining
    })  # fmt: skip


def _media_action(request: web.Request) -> str:
    return "download" if request.query.get("download") == "1" else "play"


async def _serve(request: web.Request, name: str, content_type: str) -> web.StreamResponse:
    recording_id = request.match_info["id"]
    _detail(request, f"{_media_action(request)} {request.headers.get('Range', '')}".strip())
    fd = request.app[RECORDINGS].files.open(recording_id, name)
    return _DescriptorResponse(fd, content_type, _disposition(request, f"{recording_id}-{name}"))


@_admin_route("track", query_token=True)
async def get_track(request: web.Request) -> web.StreamResponse:
    name = request.match_info["file"]
    track = request.app[RECORDINGS].catalogue.get(request.match_info["id"]).track(name)
    if track is None:
        raise NotFound(name)
    kind = "video" if track.kind == "video" else "audio"
    return await _serve(request, name, f"{kind}/webm" if name.endswith(".webm") else f"{kind}/x-matroska")


@_admin_route("combined", query_token=True)
async def get_combined(request: web.Request) -> web.StreamResponse:
    return await _serve(request, COMBINED, "video/webm")


@_admin_route("export", query_token=True)
async def get_zip(request: web.Request) -> web.StreamResponse:
    """The recording as it is on disk (manifest and tracks), stored uncompressed (media is compressed already).

    Streamed with its length known up front, so the browser shows real progress; sizes are taken now, and a file
    that changes meanwhile aborts the download rather than producing a zip that does not match its manifest.
    """
    recordings = request.app[RECORDINGS]
    recording_id = request.match_info["id"]
    manifest = recordings.catalogue.get(recording_id)
    archive = ZipStream(sized=True)
    archive.add(recordings.files.read(recording_id, MANIFEST), f"{recording_id}/{MANIFEST}")
    for track in manifest.tracks:
        try:
            size = recordings.files.stat(recording_id, track.file).st_size
        except NotFound:
            continue  # listed but never written (e.g. a segment that failed at once): the manifest says so
        chunks = _file_chunks(recordings.files, recording_id, track.file, size)
        archive.add(chunks, f"{recording_id}/{track.file}", size=size)
    _detail(request, f"{len(archive)} bytes")
    return web.Response(
        body=_in_thread(iter(archive)),
        headers={
            "Content-Type": "application/zip",
            "Content-Length": str(len(archive)),
            "Content-Disposition": f'attachment; filename="{recording_id}.zip"',
            **_NO_STORE,
        },
    )


class _Hold(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    hold: bool


class _Confirm(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    confirm: str


_Body = TypeVar("_Body", bound=BaseModel)


async def _body(request: web.Request, model: type[_Body]) -> _Body:
    try:
        return model.model_validate_json(await request.read())
    except ValidationError as exc:
        raise _Refused(400, "bad-request", exc.errors()[0]["msg"]) from None


@_admin_route("hold")
async def put_hold(request: web.Request) -> web.Response:
    recordings = request.app[RECORDINGS]
    recording_id = request.match_info["id"]
    recordings.catalogue.get(recording_id)
    hold = (await _body(request, _Hold)).hold
    admin = identity_of(request)
    _detail(request, "on" if hold else "off")
    now = datetime.datetime.now(datetime.UTC)
    state = await recordings.states.update(
        recording_id, lambda s: s.model_copy(update={"hold": hold, "hold_by": admin.user_id, "hold_at": now})
    )
    return _json({"admin": state.model_dump(mode="json")})


@_admin_route("delete")
async def delete_recording(request: web.Request) -> web.Response:
    """Deletes for good, so the body must repeat the id (``{"confirm": "<id>"}``): no accidental or replayed click."""
    recordings = request.app[RECORDINGS]
    recording_id = request.match_info["id"]
    manifest = recordings.catalogue.get(recording_id)
    if (await _body(request, _Confirm)).confirm != recording_id:
        raise _Refused(400, "confirm-mismatch", 'the body must be {"confirm": "<the recording id>"}')
    with deletion(recordings.retention.claims, recording_id) as claim:  # not while another process deletes or combines
        if claim.refused is not None:
            raise _Refused(409, "kept", KEPT_BECAUSE[claim.refused])
        async with recordings.states.lock:
            reason = why_kept(manifest, recordings.states.get(recording_id))
            if reason is not None:
                raise _Refused(409, "kept", KEPT_BECAUSE[reason])
            await asyncio.to_thread(recordings.files.remove, recording_id)
        claim.done = True
    return _json({"deleted": recording_id})


@_admin_route("combine")
async def post_combine(request: web.Request) -> web.Response:
    recordings = request.app[RECORDINGS]
    try:
        state = await recordings.combiner.submit(request.match_info["id"], identity_of(request).user_id)
    except CombineRefused as exc:
        raise _Refused(409, "combine-refused", str(exc)) from None
    return _json({"admin": state.model_dump(mode="json")}, status=202)


@_admin_route("audit")
async def get_audit(request: web.Request) -> web.StreamResponse:
    """``?format=json`` (default): the newest ``limit`` entries, newest first; ``csv``: the whole log, oldest first."""
    audit = request.app[RECORDINGS].audit
    recording = request.query.get("recording") or None
    form = request.query.get("format", "json")
    _detail(request, request.query_string or None)
    if form == "csv":
        return web.Response(
            body=_in_thread(line.encode() for line in audit.csv(recording)),
            headers={
                "Content-Type": "text/csv; charset=utf-8",
                "Content-Disposition": 'attachment; filename="hoichan-audit.csv"',
                **_NO_STORE,
            },
        )
    if form != "json":
        raise _Refused(400, "bad-request", "format must be json or csv")
    try:
        limit = min(max(int(request.query.get("limit", "500")), 1), _MAX_AUDIT_ROWS)
    except ValueError:
        raise _Refused(400, "bad-request", "limit must be a whole number") from None
    return _json({"entries": await asyncio.to_thread(audit.latest, limit, recording)})


@public
async def admin_page(request: web.Request) -> web.FileResponse:
    """Public like every page: it holds no data and asks for a sign-in; the API enforces the admin role."""
    return web.FileResponse(PAGE)


# ------------------------------------------------------------------------------------------------------ wiring


async def _background(app: web.Application) -> AsyncIterator[None]:
    recordings = app[RECORDINGS]
    await recordings.combiner.start()
    retention = asyncio.create_task(recordings.retention.run(), name="recording-retention")
    yield
    retention.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await retention
    await recordings.combiner.close()


def add_routes(app: web.Application, config: Config, audit: AuditStore, claims: JobClaims) -> None:
    """The recordings API, the admin page and the background jobs (retention sweep, combine worker); ``audit``:
    where its audit entries go, ``claims``: where its once-only jobs are decided (``signaling.records``)."""
    app[RECORDINGS] = Recordings.from_config(config, audit, claims)
    app.cleanup_ctx.append(_background)
    base = "/api/recordings/{id}"
    router = app.router
    router.add_get("/api/recordings", list_recordings)
    router.add_get(base, get_recording)
    router.add_get(base + "/tracks/{file}", get_track)
    router.add_get(base + "/combined", get_combined)
    router.add_get(base + "/zip", get_zip)
    router.add_post(base + "/combine", post_combine)
    router.add_put(base + "/hold", put_hold)
    router.add_delete(base, delete_recording)
    router.add_get("/api/audit", get_audit)
    router.add_get("/admin/recordings", admin_page)
