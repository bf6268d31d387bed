"""The technician's dashboard of connection points, over HTTP.

``GET /api/points?province=&facility=&tier=`` lists the connection points the caller may test (admins: every point;
technicians and doctors: their own facility's, as for link tests), each with its facility, whether a lobby page at
that point is online now, its last link-test verdict and the trend of its recent tests. Filters name directory ids;
an unknown one is refused rather than answered with an empty list that looks like "no points".
"""

from __future__ import annotations

from aiohttp import web

from .auth import error_response, identity_of, require
from .consults_api import LOBBY
from .directory import TIERS, ConnectionPoint, Directory
from .directory_api import DIRECTORY
from .linktests.api import LINK_TESTS
from .linktests.service import LINKTEST_ROLES, may_test

__all__ = ["TREND_LENGTH", "add_routes"]

TREND_LENGTH = 10
"""How many recent tests a point's trend shows."""


def _filters(request: web.Request, directory: Directory) -> dict[str, str] | web.Response:
    chosen = {key: request.query[key] for key in ("province", "facility", "tier") if request.query.get(key)}
    known = {
        "province": directory.provinces,
        "facility": directory.facilities,
        "tier": dict.fromkeys(TIERS),
    }
    for key, value in chosen.items():
        if value not in known[key]:
            return error_response(400, "invalid-payload", f"{key} {value!r} is not in the directory")
    return chosen


def _matches(point: ConnectionPoint, directory: Directory, chosen: dict[str, str]) -> bool:
    facility = directory.facility(point.facility)
    if facility is None:
        return False
    return (chosen.get("facility", facility.id) == facility.id and chosen.get("province", facility.province) ==
            facility.province and chosen.get("tier", facility.tier) == facility.tier)


@require(*LINKTEST_ROLES)
async def list_points(request: web.Request) -> web.Response:
    directory: Directory = request.app[DIRECTORY].current
    identity = identity_of(request)
    chosen = _filters(request, directory)
    if isinstance(chosen, web.Response):
        return chosen
    online = set(request.app[LOBBY].dispatcher.presence.points_online())
    history = request.app[LINK_TESTS].history
    points = []
    for point in directory.points.values():
        if not may_test(identity.role, identity.facility_id, point) or not _matches(point, directory, chosen):
            continue
        facility = directory.facilities[point.facility]
        recent = history.recent(point.id, TREND_LENGTH)
        points.append({
            "id": point.id,
            "label": point.label,
            "facility": facility.id,
            "facilityName": facility.name,
            "tier": facility.tier,
            "province": facility.province,
            "provinceName": directory.provinces[facility.province].name,
            "online": point.id in online,
            "last": recent[0] if recent else None,
            "trend": recent[::-1],  # oldest first, as a chart reads
        })
    scope = "all" if identity.role == "admin" else "facility"
    return web.json_response({"scope": scope, "points": points}, headers={"Cache-Control": "private, no-store"})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/points", list_points)
