"""HTTP routes of link tests: a connection point's history, and one stored result.

``GET /api/points/{point}/link-tests?limit=&before=`` lists a point's results, newest first; ``GET
/api/link-tests/{id}`` gives one. Admins see every point; technicians and doctors the points of their own facility
(another facility's point is refused, an unknown one is not found). Results are only ever written by the server
(``service.py``): there is no route to submit one.
"""

from __future__ import annotations

from aiohttp import web

from ..auth import error_response, identity_of, require
from .service import LINKTEST_ROLES, LinkTests, may_test

__all__ = ["LINK_TESTS", "add_routes"]

LINK_TESTS: web.AppKey[LinkTests] = web.AppKey("link_tests", LinkTests)
MAX_LIMIT = 500
_NO_STORE = {"Cache-Control": "private, no-store"}


@require(*LINKTEST_ROLES)
async def point_history(request: web.Request) -> web.Response:
    tests = request.app[LINK_TESTS]
    identity = identity_of(request)
    point = tests.directory.current.point(request.match_info["point_id"])
    if point is None:
        return error_response(404, "not-found", "no such connection point in the directory")
    if not may_test(identity.role, identity.facility_id, point):
        return error_response(403, "forbidden", f"only staff of {point.facility} (or an admin) may see this point")
    try:
        limit = int(request.query.get("limit", "50"))
        before = float(request.query["before"]) if "before" in request.query else None
    except ValueError:
        return error_response(400, "invalid-payload", "limit must be a whole number and before a unix time")
    if not 1 <= limit <= MAX_LIMIT:
        return error_response(400, "invalid-payload", f"limit must be within 1..{MAX_LIMIT}")
    results = tests.history.of_point(point.id, limit, before)
    return web.json_response({"point": point.model_dump(), "tests": results}, headers=_NO_STORE)


@require(*LINKTEST_ROLES)
async def one_result(request: web.Request) -> web.Response:
    tests = request.app[LINK_TESTS]
    identity = identity_of(request)
    result = tests.history.get(request.match_info["test_id"])
    if result is None or not (identity.role == "admin" or identity.facility_id == result["facilityId"]):
        return error_response(404, "not-found", "no such link test result for you")
    return web.json_response(result, headers=_NO_STORE)


def add_routes(app: web.Application, tests: LinkTests) -> None:
    app[LINK_TESTS] = tests
    app.router.add_get("/api/points/{point_id:[a-z0-9][a-z0-9_-]{0,63}}/link-tests", point_history)
    app.router.add_get("/api/link-tests/{test_id:[0-9a-f]{32}}", one_result)
