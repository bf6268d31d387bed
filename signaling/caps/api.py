"""``GET/PUT/DELETE /api/points/{point}/caps``: a connection point's caps, set by its technicians or an admin.

PUT takes ``{"uplinkKbps": int | null, "downlinkKbps": int | null, "audioOnly": bool}`` (kbit/s within
``media.limits`` bounds; at least one cap or audio-only, else DELETE) and applies it at once to everyone in a
room from that point. Technicians manage their own facility's points, admins any; doctors and others are refused.
"""

from __future__ import annotations

from typing import Annotated, Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from media.limits import MAX_KBPS, MIN_KBPS

from ..auth import error_response, identity_of, require
from ..directory import ConnectionPoint
from ..directory_api import DIRECTORY
from .service import SiteLimits

__all__ = ["CAPS", "CAPS_ROLES", "add_routes"]

CAPS: web.AppKey[SiteLimits] = web.AppKey("caps", SiteLimits)
CAPS_ROLES = ("technician", "admin")
_NO_STORE = {"Cache-Control": "private, no-store"}

Kbps = Annotated[int, Field(ge=MIN_KBPS, le=MAX_KBPS)]


class Caps(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    uplinkKbps: Kbps | None = None
    downlinkKbps: Kbps | None = None
    audioOnly: bool = False

    @model_validator(mode="after")
    def _something(self) -> Caps:
        if self.uplinkKbps is None and self.downlinkKbps is None and not self.audioOnly:
            raise ValueError("set uplinkKbps, downlinkKbps or audioOnly (DELETE removes the caps)")
        return self


def _point(request: web.Request) -> ConnectionPoint | web.Response:
    point = request.app[DIRECTORY].current.point(request.match_info["point_id"])
    if point is None:
        return error_response(404, "not-found", "no such connection point in the directory")
    identity = identity_of(request)
    if identity.role != "admin" and identity.facility_id != point.facility:
        return error_response(403, "forbidden", f"only technicians of {point.facility} (or an admin) set its caps")
    return point


def _answer(point: ConnectionPoint, caps: dict[str, Any] | None) -> web.Response:
    return web.json_response({"point": point.id, "caps": caps}, headers=_NO_STORE)


@require(*CAPS_ROLES)
async def get_caps(request: web.Request) -> web.Response:
    point = _point(request)
    if isinstance(point, web.Response):
        return point
    return _answer(point, request.app[CAPS].store.get(point.id))


@require(*CAPS_ROLES)
async def put_caps(request: web.Request) -> web.Response:
    point = _point(request)
    if isinstance(point, web.Response):
        return point
    try:
        caps = Caps.model_validate(await request.json())
    except ValueError as exc:  # not JSON (json.JSONDecodeError) or not valid caps (ValidationError)
        message = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors()[:3]) \
            if isinstance(exc, ValidationError) else "body is not JSON"
        return error_response(400, "invalid-payload", message)
    limits = request.app[CAPS]
    stored = limits.store.put(point.id, caps.uplinkKbps, caps.downlinkKbps, caps.audioOnly,
                              identity_of(request).user_id or "")
    await limits.changed(point.id)
    return _answer(point, stored)


@require(*CAPS_ROLES)
async def delete_caps(request: web.Request) -> web.Response:
    point = _point(request)
    if isinstance(point, web.Response):
        return point
    limits = request.app[CAPS]
    if limits.store.delete(point.id):
        await limits.changed(point.id)
    return _answer(point, None)


def add_routes(app: web.Application, limits: SiteLimits) -> None:
    app[CAPS] = limits
    path = "/api/points/{point_id:[a-z0-9][a-z0-9_-]{0,63}}/caps"
    app.router.add_get(path, get_caps)
    app.router.add_put(path, put_caps)
    app.router.add_delete(path, delete_caps)
