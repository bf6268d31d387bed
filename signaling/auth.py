"""Who is asking, and may they: the one place where a sign-in token becomes an ``Identity`` and roles are enforced.

Every check happens here, on the server: the page only hides what a role cannot use. A token is a claim that
somebody signed in; the account it names is looked up on every use, so a removed account or a changed password
shuts its old tokens out at once, and role, facility and display name always come from the store, never from
what a client sends.

- socket.io: ``TokenAuthenticator.authenticate`` runs once per connection (token in the socket.io ``auth``
  object, ``{"token": "..."}``, or a ``?token=`` query); each event then declares the roles it allows
  (``SignalingEvents._route``).
- HTTP: every route is wrapped in ``require(*roles)`` or marked ``public``; a test fails on a route that is neither.

Roles: ``doctor``, ``technician``, ``admin`` (accounts) and ``guest``: somebody with a room link and no account,
admitted only while ``auth.allow_guests`` is true, and only to take part in a room.
"""

from __future__ import annotations

import functools
import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol
from urllib.parse import parse_qs

from aiohttp import web

from .accounts import ROLES, AccountStore
from .tokens import TokenError, TokenIssuer

__all__ = [
    "AUTHENTICATOR",
    "GUEST",
    "PARTICIPANT_ROLES",
    "AuthError",
    "Authenticator",
    "Identity",
    "TokenAuthenticator",
    "access_of",
    "error_response",
    "identity_of",
    "public",
    "require",
]

GUEST = "guest"
PARTICIPANT_ROLES: frozenset[str] = frozenset({*ROLES, GUEST})
"""Who may take part in a room (join, negotiate media, leave)."""

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Identity:
    user_id: str | None
    """The account's username; None for a guest."""
    role: str  # "doctor" | "technician" | "admin" | "guest"
    facility_id: str | None
    display_name: str | None = None
    specialties: tuple[str, ...] = ()

    @property
    def is_guest(self) -> bool:
        return self.user_id is None


class AuthError(Exception):
    """Refused: ``unauthorized`` = not (or no longer) signed in; ``forbidden`` = signed in, but not allowed this."""

    def __init__(self, code: Literal["unauthorized", "forbidden"], message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Authenticator(Protocol):
    def authenticate(self, environ: dict[str, Any], auth: Any) -> Identity:
        """The identity of a new socket.io connection; ``AuthError`` to refuse it."""


class TokenAuthenticator:
    def __init__(self, tokens: TokenIssuer, accounts: AccountStore, allow_guests: bool) -> None:
        self.tokens = tokens
        self.accounts = accounts
        self.allow_guests = allow_guests

    def authenticate(self, environ: dict[str, Any], auth: Any) -> Identity:
        """socket.io: a token makes a signed-in identity; no token makes a guest, when guests are allowed.

        A token that is present but bad (expired, forged, revoked) is refused, never downgraded to a guest: the
        page must learn that it has to sign in again.
        """
        token = _socket_token(environ, auth)
        if token is not None:
            return self.identify(token)
        if self.allow_guests:
            return Identity(user_id=None, role=GUEST, facility_id=None)
        raise AuthError("unauthorized", "sign in to join a consultation")

    def identify(self, token: str) -> Identity:
        """The signed-in identity a token stands for, as the account is now."""
        try:
            claims = self.tokens.verify(token)
        except TokenError as exc:
            raise AuthError("unauthorized", exc.message) from None
        account = self.accounts.get(claims.username)
        if account is None or account.token_version != claims.version:
            raise AuthError("unauthorized", "this sign-in is no longer valid; sign in again")
        return Identity(
            user_id=account.username,
            role=account.role,
            facility_id=account.facility_id,
            display_name=account.display_name,
            specialties=account.specialties,
        )

    def from_request(self, request: web.Request) -> Identity:
        """HTTP: the identity behind ``Authorization: Bearer <token>``; ``AuthError`` without one."""
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthError("unauthorized", "sign in first (Authorization: Bearer <token>)")
        return self.identify(token.strip())


def _socket_token(environ: dict[str, Any], auth: Any) -> str | None:
    """The token a socket.io client sent: ``auth={"token": ...}`` first, else ``?token=``; None if neither."""
    if isinstance(auth, dict) and auth.get("token"):
        token = auth["token"]
        if not isinstance(token, str):
            raise AuthError("unauthorized", "auth.token must be a string")
        return token
    values = parse_qs(environ.get("QUERY_STRING", "")).get("token")
    return values[0] if values and values[0] else None


AUTHENTICATOR: web.AppKey[TokenAuthenticator] = web.AppKey("authenticator", TokenAuthenticator)
_IDENTITY: web.RequestKey[Identity] = web.RequestKey("identity", Identity)
_ACCESS = "hoichan_access"
_STATUS = {"unauthorized": 401, "forbidden": 403}


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
    """Every API error has one shape, the same as a socket.io ``error``: ``{"error": {"code", "message"}}``."""
    return web.json_response({"error": {"code": code, "message": message}}, status=status, headers=headers)


def require(*roles: str, token: Callable[[web.Request], str | None] | None = None) -> Callable[[Handler], Handler]:
    """Guard an aiohttp handler: only signed-in accounts whose role is one of ``roles`` reach it.

    Recordings, for instance, are admin-only::

        from signaling.auth import identity_of, require

        @require("admin")
        async def list_recordings(request: web.Request) -> web.Response:
            admin = identity_of(request)  # username, role, facility_id, display_name from the account store
            ...

        app.router.add_get("/api/recordings", list_recordings)

    The token comes from the ``Authorization: Bearer <token>`` header (``POST /api/login`` issues it). No token,
    or an expired, forged or revoked one → 401; a signed-in account of another role → 403. Both answer
    ``{"error": {"code": "unauthorized" | "forbidden", "message"}}`` and the handler never runs. Guests have no
    token, so no guarded route is open to them. Scope by facility inside the handler with ``identity_of``.

    ``token`` gives, per request, a fixed bearer token that also admits a machine with no account (a Prometheus
    scraper's, ``metrics.token``); ``identity_of`` is then not set for that request.
    """
    unknown = set(roles) - set(ROLES)
    if not roles or unknown:
        raise ValueError(f"require() takes one or more of {', '.join(ROLES)} (got {', '.join(roles) or 'none'})")
    allowed = frozenset(roles)

    def wrap(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def guarded(request: web.Request) -> web.StreamResponse:
            machine = token(request) if token is not None else None
            if machine is not None and hmac.compare_digest(
                request.headers.get("Authorization", "").encode(), f"Bearer {machine}".encode()
            ):
                return await handler(request)
            try:
                identity = request.app[AUTHENTICATOR].from_request(request)
                if identity.role not in allowed:
                    raise AuthError("forbidden", f"this needs the role {' or '.join(sorted(allowed))}")
            except AuthError as exc:
                headers = {"WWW-Authenticate": 'Bearer realm="hoichan"'} if exc.code == "unauthorized" else None
                return error_response(_STATUS[exc.code], exc.code, exc.message, headers)
            request[_IDENTITY] = identity
            return await handler(request)

        setattr(guarded, _ACCESS, allowed)
        return guarded

    return wrap


def public(handler: Handler) -> Handler:
    """Mark a route as open to anyone, on purpose (the page, health check, sign-in itself)."""
    setattr(handler, _ACCESS, "public")
    return handler


def access_of(handler: Any) -> frozenset[str] | Literal["public"] | None:
    """Who a route handler admits: its roles, ``"public"``, or None if it was never declared (a bug)."""
    return getattr(handler, _ACCESS, None)


def identity_of(request: web.Request) -> Identity:
    """The signed-in identity of a request that went through ``require``."""
    return request[_IDENTITY]
