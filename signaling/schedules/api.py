"""HTTP routes of scheduled sessions: admins create, list and delete schedules; every account sees its upcoming ones.

A schedule is weekly (ISO weekday 1 = Monday … 7 = Sunday, a local ``HH:MM`` and a time zone, by default
``scheduler.timezone``) or one-off (``at``: an ISO date-time; without an offset it is read in the time zone). Its
parties are accounts (usernames) and/or facilities (ids in the directory); each must exist, as must the specialty (a
directory code), and a one-off must be in the future.
"""

from __future__ import annotations

import datetime
import re
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from ..auth import AUTHENTICATOR, error_response, identity_of, require
from ..directory_api import DIRECTORY
from .scheduler import Scheduler

__all__ = ["SCHEDULER", "add_routes"]

SCHEDULER: web.AppKey[Scheduler] = web.AppKey("scheduler", Scheduler)
UTC = datetime.UTC
_MAX_BODY = 64 * 1024

Slug = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]
Username = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$")]
_HH_MM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")


class ScheduleRequest(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    title: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=120)]
    kind: Literal["weekly", "once"]
    weekday: Annotated[int, Field(ge=1, le=7)] | None = None
    time: str | None = None
    at: str | None = None
    timezone: str | None = None
    durationMinutes: Annotated[int, Field(ge=5, le=480)] = 60
    specialty: Slug | None = None
    accounts: Annotated[list[Username], Field(max_length=50)] = []
    facilities: Annotated[list[Slug], Field(max_length=50)] = []


class _Refused(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _fields(request: ScheduleRequest, default_zone: str, now: datetime.datetime) -> dict[str, Any]:
    """The request as ``Schedule`` fields; ``_Refused`` (400) for what the schema alone cannot say."""
    zone_name = request.timezone if request.timezone is not None else default_zone
    try:
        zone = ZoneInfo(zone_name)
    except (ZoneInfoNotFoundError, ValueError):
        raise _Refused(400, "invalid-payload", f"timezone: not a known time zone: {zone_name[:60]!r}") from None
    if not request.accounts and not request.facilities:
        raise _Refused(400, "invalid-payload", "give at least one party: accounts and/or facilities")
    weekday: int | None = None
    local_time: datetime.time | None = None
    at: datetime.datetime | None = None
    if request.kind == "weekly":
        if request.at is not None:
            raise _Refused(400, "invalid-payload", "at: only for a one-off session (kind once)")
        if request.weekday is None or request.time is None:
            raise _Refused(400, "invalid-payload", "a weekly session needs weekday (1 = Monday … 7 = Sunday) and time")
        if not _HH_MM.match(request.time):
            raise _Refused(400, "invalid-payload", f"time: not a time of day as HH:MM: {request.time[:20]!r}")
        weekday, local_time = request.weekday, datetime.time.fromisoformat(request.time)
    else:
        if request.weekday is not None or request.time is not None:
            raise _Refused(400, "invalid-payload", "weekday and time: only for a weekly session (kind weekly)")
        if request.at is None:
            raise _Refused(400, "invalid-payload", "a one-off session needs at (e.g. 2026-12-01T14:00)")
        try:
            at = datetime.datetime.fromisoformat(request.at)
        except ValueError:
            raise _Refused(400, "invalid-payload", f"at: not an ISO date-time: {request.at[:40]!r}") from None
        at = (at.replace(tzinfo=zone) if at.tzinfo is None else at).astimezone(UTC)
        if at <= now:
            raise _Refused(400, "invalid-payload", "at: this time has passed")
    return {
        "title": request.title, "kind": request.kind, "weekday": weekday, "local_time": local_time, "at": at,
        "timezone": zone_name, "duration_minutes": request.durationMinutes, "specialty": request.specialty,
        "accounts": tuple(dict.fromkeys(request.accounts)), "facilities": tuple(dict.fromkeys(request.facilities)),
    }  # fmt: skip


@require("admin")
async def create_schedule(request: web.Request) -> web.Response:
    scheduler = request.app[SCHEDULER]
    accounts = request.app[AUTHENTICATOR].accounts
    try:
        if request.content_length is not None and request.content_length > _MAX_BODY:
            raise _Refused(413, "payload-too-large", f"the body is limited to {_MAX_BODY} bytes")
        try:
            body = ScheduleRequest.model_validate_json(await request.read())
        except ValidationError as exc:
            error = exc.errors()[0]
            where = ".".join(str(p) for p in error["loc"]) or "body"
            raise _Refused(400, "invalid-payload", f"{where}: {error['msg']}") from None
        fields = _fields(body, scheduler.config.timezone, datetime.datetime.now(UTC))
        unknown = [u for u in fields["accounts"] if accounts.get(u) is None]
        if unknown:
            raise _Refused(400, "unknown-account", f"no such account: {', '.join(unknown)}")
        directory = request.app[DIRECTORY].current
        unknown = [f for f in fields["facilities"] if directory.facility(f) is None]
        if unknown:
            raise _Refused(400, "unknown-facility", f"no such facility in the directory: {', '.join(unknown)}")
        if fields["specialty"] is not None and directory.specialty(fields["specialty"]) is None:
            raise _Refused(400, "unknown-specialty", f"no such specialty in the directory: {fields['specialty']}")
    except _Refused as exc:
        return error_response(exc.status, exc.code, exc.message)
    schedule = scheduler.store.add(**fields, created_by=identity_of(request).user_id or "")
    return web.json_response({"schedule": _with_next(scheduler, schedule)}, status=201)


def _with_next(scheduler: Scheduler, schedule: Any) -> dict[str, Any]:
    following = schedule.rule.next_after(datetime.datetime.now(UTC))
    return {
        **schedule.public(),
        "nextAt": None if following is None else following.isoformat(),
        "opened": scheduler.store.opened(schedule.id),
    }


@require("admin")
async def list_schedules(request: web.Request) -> web.Response:
    scheduler = request.app[SCHEDULER]
    return web.json_response({"schedules": [_with_next(scheduler, s) for s in scheduler.store.active()]})


@require("admin")
async def delete_schedule(request: web.Request) -> web.Response:
    if not request.app[SCHEDULER].store.delete(request.match_info["schedule_id"]):
        return error_response(404, "not-found", "no such schedule")
    return web.json_response({"ok": True})


@require("doctor", "technician", "admin")
async def upcoming(request: web.Request) -> web.Response:
    sessions = request.app[SCHEDULER].upcoming(identity_of(request), datetime.datetime.now(UTC))
    return web.json_response({"sessions": sessions})


def add_routes(app: web.Application, scheduler: Scheduler) -> None:
    app[SCHEDULER] = scheduler
    app.router.add_post("/api/schedules", create_schedule)
    app.router.add_get("/api/schedules", list_schedules)
    app.router.add_get("/api/schedules/upcoming", upcoming)
    app.router.add_delete("/api/schedules/{schedule_id:[0-9a-f]{10}}", delete_schedule)
