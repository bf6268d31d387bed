"""``GET /api/rooms/{room_id}/link-history``: a room's link-quality timeline, during the call and after it.

Who may look: admins; technicians of a facility that took part (they fix its link); doctors who took part.
Anyone else, or a room with no samples, gets the same 404, so room ids cannot be probed.
"""

from __future__ import annotations

from aiohttp import web

from .auth import Identity, error_response, identity_of, require
from .link_history import LinkHistory

__all__ = ["LINK_HISTORY", "add_routes"]

LINK_HISTORY: web.AppKey[LinkHistory] = web.AppKey("link_history", LinkHistory)


def _may_view(history: LinkHistory, identity: Identity, room_id: str) -> bool:
    if identity.role == "admin":
        return bool(history.facilities(room_id))
    if identity.role == "technician":
        return identity.facility_id in history.facilities(room_id)
    return any(person["username"] == identity.user_id for person in history.timeline(room_id))


@require("admin", "technician", "doctor")
async def room_link_history(request: web.Request) -> web.Response:
    history = request.app[LINK_HISTORY]
    room_id = request.match_info["room_id"]
    if not _may_view(history, identity_of(request), room_id):
        return error_response(404, "not-found", f"no link-quality history of room {room_id} for you")
    return web.json_response({"roomId": room_id, "participants": history.timeline(room_id)},
                             headers={"Cache-Control": "private, no-store"})


def add_routes(app: web.Application, history: LinkHistory) -> None:
    app[LINK_HISTORY] = history
    app.router.add_get("/api/rooms/{room_id:[A-Za-z0-9_-]{1,64}}/link-history", room_link_history)
