"""HTTP routes of sharing: upload an image into a room, list a room's shared record, fetch a shared image.

Uploads are HTTP (multipart), not socket.io: a photo is megabytes, and a socket.io message that size would hold up
the signaling of the whole room. Everything else (vitals, annotations) is a socket.io event (``service.py``).
"""

from __future__ import annotations

from aiohttp import BodyPartReader, web

from ..auth import error_response, identity_of, require
from .images import MEDIA_TYPES, ImageRejected
from .service import SHARING_ROLES, Sharing

__all__ = ["SHARING", "add_routes"]

SHARING: web.AppKey[Sharing] = web.AppKey("sharing", Sharing)
_ROOM = "/api/rooms/{room_id:[A-Za-z0-9_-]{1,64}}/shared"
_FORM_OVERHEAD = 16 * 1024  # multipart boundaries, headers and a caption around the image itself
_MAX_CAPTION = 200
_CHUNK = 64 * 1024
_NO_STORE = {"Cache-Control": "private, no-store"}


class _Refused(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@require(*SHARING_ROLES)
async def upload_image(request: web.Request) -> web.Response:
    """``multipart/form-data`` with a file field ``image`` and an optional text field ``caption``."""
    sharing = request.app[SHARING]
    room_id = request.match_info["room_id"]
    participant = sharing.participant(identity_of(request), room_id)
    if participant is None:
        return error_response(403, "forbidden", f"only participants of room {room_id} can share images in it")
    limit = sharing.config.max_image_bytes
    try:
        if request.content_length is not None and request.content_length > limit + _FORM_OVERHEAD:
            raise _Refused(413, "payload-too-large", f"images are limited to {limit} bytes")
        image, caption = await _read_form(request, limit)
        item = await sharing.share_image(participant, image, caption)
    except _Refused as exc:
        return error_response(exc.status, exc.code, exc.message)
    except ImageRejected as exc:
        return error_response(415 if exc.code == "unsupported-type" else 400, exc.code, exc.message)
    return web.json_response({"item": item.public()}, status=201)


async def _read_form(request: web.Request, limit: int) -> tuple[bytes, str | None]:
    if request.content_type != "multipart/form-data":
        raise _Refused(400, "invalid-payload", "send the image as multipart/form-data with a field named image")
    image: bytes | None = None
    caption: str | None = None
    try:
        reader = await request.multipart()
        async for part in reader:
            if not isinstance(part, BodyPartReader) or part.name not in ("image", "caption"):
                raise _Refused(400, "invalid-payload", "the form takes only the fields image and caption")
            if part.name == "image":
                if image is not None:
                    raise _Refused(400, "invalid-payload", "one image per upload")
                image = await _read_limited(part, limit, f"images are limited to {limit} bytes")
            else:
                text = (await _read_limited(part, _MAX_CAPTION * 4, "caption: too long")).decode("utf-8").strip()
                if len(text) > _MAX_CAPTION:
                    raise _Refused(400, "invalid-payload", f"caption: at most {_MAX_CAPTION} characters")
                caption = text or None
    except (ValueError, UnicodeDecodeError) as exc:  # aiohttp's multipart parser reports a malformed body so
        raise _Refused(400, "invalid-payload", f"malformed form: {exc}") from None
    if not image:
        raise _Refused(400, "invalid-payload", "image: required (a JPEG or PNG file)")
    return image, caption


async def _read_limited(part: BodyPartReader, limit: int, too_large: str) -> bytes:
    data = bytearray()
    while chunk := await part.read_chunk(_CHUNK):
        data += chunk
        if len(data) > limit:
            raise _Refused(413, "payload-too-large", too_large)
    return bytes(data)


def _viewable(request: web.Request) -> str:
    room_id = request.match_info["room_id"]
    if not request.app[SHARING].may_view(identity_of(request), room_id):
        raise _Refused(403, "forbidden", f"only participants of room {room_id} and admins can see what was shared")
    return room_id


@require(*SHARING_ROLES)
async def list_shared(request: web.Request) -> web.Response:
    try:
        room_id = _viewable(request)
    except _Refused as exc:
        return error_response(exc.status, exc.code, exc.message)
    items = [item.public() for item in request.app[SHARING].record.list(room_id)]
    return web.json_response({"room": room_id, "items": items}, headers=_NO_STORE)


@require(*SHARING_ROLES)
async def get_image(request: web.Request) -> web.StreamResponse:
    try:
        room_id = _viewable(request)
    except _Refused as exc:
        return error_response(exc.status, exc.code, exc.message)
    sharing = request.app[SHARING]
    item = sharing.record.get(room_id, request.match_info["item_id"])
    if item is None or item.kind != "image":
        return error_response(404, "not-found", "no such image in this room")
    kind = item.data["format"]
    path = sharing.files.path(room_id, item.id, kind)
    headers = {**_NO_STORE, "Content-Type": MEDIA_TYPES[kind], "Content-Disposition": "inline"}
    return web.FileResponse(path, headers=headers)


def add_routes(app: web.Application, sharing: Sharing) -> None:
    app[SHARING] = sharing
    app.router.add_post(_ROOM + "/images", upload_image)
    app.router.add_get(_ROOM, list_shared)
    app.router.add_get(_ROOM + "/{item_id:[0-9a-f]{32}}/image", get_image)
