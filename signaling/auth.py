"""Who is connecting: the seam where sign-in and roles plug in.

Today every connection is a guest whose name and facility come from the join message. The sign-in issue
replaces ``GuestAuthenticator`` with one that verifies a signed token; handlers only ever see an ``Identity``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class Identity:
    user_id: str | None
    role: str  # "doctor" | "technician" | "admin" | "guest"
    facility_id: str | None


class Authenticator(Protocol):
    def authenticate(self, environ: dict[str, Any], auth: Any) -> Identity | None:
        """The identity of a new socket.io connection, or None to refuse it."""


class GuestAuthenticator:
    def authenticate(self, environ: dict[str, Any], auth: Any) -> Identity | None:
        return Identity(user_id=None, role="guest", facility_id=None)
