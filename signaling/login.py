"""Sign-in over HTTP: ``POST /api/login`` issues a token, ``GET /api/me`` says whose it is, ``GET /api/login`` says
whether people without an account may join rooms (so the page knows to ask for a sign-in before trying).

A wrong username and a wrong password get the same answer in the same time (``AccountStore.authenticate``), and
guessing is throttled per username and remote address: after ``MAX_FAILURES`` attempts without success, that pair
is refused for ``LOCKOUT_SECONDS`` before any password is even checked.
"""

from __future__ import annotations

import datetime
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

from aiohttp import web
from pydantic import BaseModel, ConfigDict, StringConstraints, ValidationError

from .accounts import ROLES, describe_error
from .auth import AUTHENTICATOR, error_response, identity_of, public, require

__all__ = ["LOCKOUT_SECONDS", "MAX_FAILURES", "THROTTLE", "LoginThrottle", "add_routes"]

MAX_FAILURES = 5
LOCKOUT_SECONDS = 30.0
_FORGET_AFTER_SECONDS = 600.0  # failures this old no longer count towards a lockout
_MAX_TRACKED = 10_000  # bound on remembered (username, address) pairs, against a flood of made-up usernames


@dataclass
class _Attempts:
    count: int = 0
    last: float = 0.0
    locked_until: float = 0.0


class LoginThrottle:
    """Failed sign-ins per (username, remote address), in memory: a restart forgets them, which is acceptable for a
    30-second lockout. An attempt counts as failed from the moment it starts, so parallel guesses are limited too.
    """

    def __init__(
        self,
        max_failures: int = MAX_FAILURES,
        lockout_seconds: float = LOCKOUT_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._max = max_failures
        self._lockout = lockout_seconds
        self._clock = clock
        self._attempts: dict[tuple[str, str], _Attempts] = {}

    def begin(self, key: tuple[str, str]) -> float:
        """Record an attempt; returns 0 if it may go ahead, else the seconds until it may."""
        now = self._clock()
        entry = self._attempts.get(key)
        if entry is not None and entry.locked_until > now:
            return entry.locked_until - now
        if entry is None or now - entry.last > _FORGET_AFTER_SECONDS:
            self._prune(now)
            entry = self._attempts[key] = _Attempts()
        entry.count += 1
        entry.last = now
        if entry.count >= self._max:
            entry.count, entry.locked_until = 0, now + self._lockout
        return 0.0

    def succeeded(self, key: tuple[str, str]) -> None:
        self._attempts.pop(key, None)

    def _prune(self, now: float) -> None:
        if len(self._attempts) >= _MAX_TRACKED:
            for key in [k for k, e in self._attempts.items() if e.locked_until <= now]:
                del self._attempts[key]


THROTTLE: web.AppKey[LoginThrottle] = web.AppKey("login_throttle", LoginThrottle)


class LoginRequest(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    username: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    password: Annotated[str, StringConstraints(min_length=1, max_length=1024)]


@public
async def login_options(request: web.Request) -> web.Response:
    return web.json_response({"allowGuests": request.app[AUTHENTICATOR].allow_guests})


@public
async def login(request: web.Request) -> web.Response:
    try:
        body = LoginRequest.model_validate(await request.json())
    except ValueError as exc:  # pydantic's ValidationError and json's JSONDecodeError are both ValueErrors
        detail = describe_error(exc) if isinstance(exc, ValidationError) else "the body must be JSON"
        return error_response(400, "invalid-payload", detail)
    auth = request.app[AUTHENTICATOR]
    throttle = request.app[THROTTLE]
    key = (body.username.strip().lower(), request.remote or "")
    wait = throttle.begin(key)
    if wait:
        return error_response(
            429,
            "too-many-attempts",
            f"too many failed sign-ins; try again in {math.ceil(wait)} s",
            headers={"Retry-After": str(math.ceil(wait))},
        )
    account = await auth.accounts.authenticate(body.username, body.password)
    if account is None:
        return error_response(401, "unauthorized", "wrong username or password")
    throttle.succeeded(key)
    now = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    token = auth.tokens.issue(account, now)
    expires = now + auth.tokens.ttl
    return web.json_response(
        {"token": token, "expiresAt": expires.isoformat(timespec="seconds"), "user": account.public()}
    )


@require(*ROLES)
async def me(request: web.Request) -> web.Response:
    account = request.app[AUTHENTICATOR].accounts.get(identity_of(request).user_id or "")
    if account is None:  # removed between the check and now
        return error_response(401, "unauthorized", "this account no longer exists")
    return web.json_response({"user": account.public()})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/login", login_options)
    app.router.add_post("/api/login", login)
    app.router.add_get("/api/me", me)
