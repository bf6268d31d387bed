"""The consult log, statistics and CSV export over HTTP, and who is online (presence).

Who sees what: admins see every consult, the statistics and the CSV; a doctor sees the consults they called,
answered or were invited to; a technician sees those their facility called or answered. Filters are checked
against the directory, so a mistyped facility or specialty is an error, never an empty answer that looks true.
"""

from __future__ import annotations

import csv
import datetime
import io
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, model_validator

from .accounts import ROLES, describe_error
from .auth import error_response, identity_of, require
from .consult_log import OUTCOMES, ConsultRecords, LogFilter, iter_csv_rows, public_row
from .directory import Directory
from .directory_api import DIRECTORY
from .lobby_events import LobbyEvents
from .statistics import GROUPS, day_bounds, statistics

__all__ = ["LOBBY", "add_routes"]

LOBBY: web.AppKey[LobbyEvents] = web.AppKey("lobby", LobbyEvents)
CONSULT_ID = "{id:[0-9a-f]{16}}"
Slug = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]
_DEFAULT_DAYS = 30
_MAX_DAYS = 3660


class Query(BaseModel):
    """Query string of the log, statistics and CSV routes (all optional)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    start: datetime.date | None = Field(default=None, alias="from")
    end: datetime.date | None = Field(default=None, alias="to")
    facility: Slug | None = None
    province: Slug | None = None
    specialty: Slug | None = None
    outcome: str | None = None
    by: str = "facility"
    limit: int = Field(default=500, ge=1, le=100_000)

    @model_validator(mode="after")
    def _consistent(self) -> Query:
        if self.start is not None and self.end is not None:
            if self.end < self.start:
                raise ValueError("to: must not be before from")
            if (self.end - self.start).days > _MAX_DAYS:
                raise ValueError(f"the range is longer than {_MAX_DAYS} days")
        if self.outcome is not None and self.outcome not in OUTCOMES:
            raise ValueError(f"outcome: must be one of {', '.join(OUTCOMES)}")
        if self.by not in GROUPS:
            raise ValueError(f"by: must be one of {', '.join(GROUPS)}")
        return self


class _Refused(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.response = error_response(status, code, message)


def _query(request: web.Request) -> Query:
    params = dict(request.query)
    if len(params) != len(request.query):
        raise _Refused(400, "invalid-payload", "each query parameter may be given once")
    try:
        query = Query.model_validate(params)
    except ValidationError as exc:
        raise _Refused(400, "invalid-payload", describe_error(exc)) from None
    directory: Directory = request.app[DIRECTORY].current
    for value, known, what in (
        (query.facility, directory.facilities, "facility"),
        (query.province, directory.provinces, "province"),
        (query.specialty, directory.specialties, "specialty"),
    ):
        if value is not None and value not in known:
            raise _Refused(400, f"unknown-{what}", f"{what} {value!r} is not in the directory")
    return query


def _filter(request: web.Request, query: Query, *, default_days: int | None) -> LogFilter:
    """The query as a log filter, narrowed to what the caller may see; ``default_days`` fills a missing range."""
    zone = request.app[LOBBY].dispatcher.timezone
    today = datetime.datetime.now(zone).date()
    start, end = query.start, query.end
    if default_days is not None:
        end = end or today
        start = start or end - datetime.timedelta(days=default_days - 1)
    bounds = day_bounds(start or datetime.date(2000, 1, 1), end or today, zone) if start or end else (None, None)
    identity = identity_of(request)
    return LogFilter(
        start=bounds[0],
        end=bounds[1],
        facility=query.facility,
        province=query.province,
        specialty=query.specialty,
        outcome=query.outcome,
        party=identity.user_id if identity.role == "doctor" else None,
        involving_facility=identity.facility_id if identity.role == "technician" else None,
        limit=query.limit,
    )


def _log(request: web.Request) -> ConsultRecords:
    return request.app[LOBBY].dispatcher.log


@require(*ROLES)
async def list_consults(request: web.Request) -> web.Response:
    try:
        where = _filter(request, _query(request), default_days=None)
    except _Refused as refused:
        return refused.response
    return web.json_response({"consults": [public_row(row) for row in _log(request).rows(where)]})


@require(*ROLES)
async def get_consult(request: web.Request) -> web.Response:
    consult_id = request.match_info["id"]
    identity = identity_of(request)
    log = _log(request)
    consult = log.get(consult_id)
    visible = consult is not None and (
        identity.role == "admin"
        or (identity.role == "doctor" and identity.user_id in (log.parties(consult_id) or {}))
        or (identity.role == "technician"
            and identity.facility_id in (consult["caller"]["facility"], (consult["answeredBy"] or {}).get("facility")))
    )  # fmt: skip
    if not visible:  # another facility's consult looks the same as none
        return error_response(404, "not-found", "no such consult")
    return web.json_response(consult)


@require("admin")
async def consult_statistics(request: web.Request) -> web.Response:
    try:
        query = _query(request)
        where = _filter(request, query, default_days=_DEFAULT_DAYS)
    except _Refused as refused:
        return refused.response
    zone: ZoneInfo = request.app[LOBBY].dispatcher.timezone
    rows = _log(request).rows(LogFilter(**{**where.__dict__, "limit": None}))
    body = statistics(rows, query.by, request.app[DIRECTORY].current, zone)  # type: ignore[arg-type]
    assert where.start is not None and where.end is not None
    last_day = (where.end - datetime.timedelta(days=1)).astimezone(zone).date()
    body.update({"from": where.start.astimezone(zone).date().isoformat(), "to": last_day.isoformat(),
                 "timezone": zone.key})  # fmt: skip
    return web.json_response(body)


@require("admin")
async def export_csv(request: web.Request) -> web.Response:
    try:
        where = _filter(request, _query(request), default_days=_DEFAULT_DAYS)
    except _Refused as refused:
        return refused.response
    out = io.StringIO()
    writer = csv.writer(out)
    for row in iter_csv_rows(_log(request), LogFilter(**{**where.__dict__, "limit": None})):
        writer.writerow([_cell(value) for value in row])
    return web.Response(
        body=out.getvalue().encode("utf-8-sig"),  # the BOM lets spreadsheet software read Vietnamese correctly
        content_type="text/csv",
        charset="utf-8",
        headers={"Content-Disposition": 'attachment; filename="hoichan-consults.csv"'},
    )


def _cell(value: str) -> str:
    """A value a spreadsheet shows as text, never runs as a formula (CSV injection)."""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


@require(*ROLES)
async def presence(request: web.Request) -> web.Response:
    lobby = request.app[LOBBY]
    directory: Directory = request.app[DIRECTORY].current
    points = []
    for point_id in lobby.dispatcher.presence.points_online():
        point = directory.point(point_id)
        points.append({"id": point_id, "facility": point.facility if point else None,
                       "label": point.label if point else None})  # fmt: skip
    body: dict[str, Any] = {
        "points": points,
        "doctors": lobby.dispatcher.presence.doctors(),
        "onDuty": lobby.summary(),
    }
    return web.json_response(body)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/consults", list_consults)
    app.router.add_get("/api/consults.csv", export_csv)
    app.router.add_get("/api/consults/" + CONSULT_ID, get_consult)
    app.router.add_get("/api/statistics", consult_statistics)
    app.router.add_get("/api/presence", presence)
