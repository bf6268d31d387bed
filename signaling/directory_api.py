"""The directory over HTTP: everyone signed in reads it (the pages build their choices from it); admins reload it.

``POST /api/directory/reload`` is for an operator who edited the file and wants it in force now (or whose server
does not watch the file): the answer says what is loaded, or names the entry that is wrong while the previous
directory stays in force.
"""

from __future__ import annotations

from aiohttp import web

from .accounts import ROLES
from .auth import AUTHENTICATOR, error_response, identity_of, require
from .directory import DirectoryError, DirectorySource, account_problems

__all__ = ["DIRECTORY", "add_routes"]

DIRECTORY: web.AppKey[DirectorySource] = web.AppKey("directory", DirectorySource)


@require(*ROLES)
async def get_directory(request: web.Request) -> web.Response:
    source = request.app[DIRECTORY]
    body = source.current.public()
    if identity_of(request).role == "admin":  # where the file is and why an edit was refused: for operators only
        body["file"] = str(source.path)
        body["lastError"] = source.last_error
    return web.json_response(body)


@require("admin")
async def reload_directory(request: web.Request) -> web.Response:
    source = request.app[DIRECTORY]
    try:
        directory = source.reload()
    except DirectoryError as exc:
        return error_response(422, "invalid-directory", f"{exc}; the directory {source.current.version} stays in force")
    accounts = request.app[AUTHENTICATOR].accounts.all()
    return web.json_response(
        {
            "version": directory.version,
            "loadedAt": directory.loaded_at.isoformat(timespec="seconds"),
            "counts": {
                "provinces": len(directory.provinces),
                "specialties": len(directory.specialties),
                "facilities": len(directory.facilities),
                "points": len(directory.points),
                "partnerships": len(directory.partnerships),
            },
            "warnings": account_problems(directory, accounts),
        }
    )


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/directory", get_directory)
    app.router.add_post("/api/directory/reload", reload_directory)
