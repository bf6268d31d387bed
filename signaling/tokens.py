"""Sign-in tokens: short JWTs (HS256) that say who signed in, with which role and facility, until when.

Why JWT and HS256: the same server issues and checks them, so one shared secret is enough, and a token can ride
in a URL, a socket.io ``auth`` object or an ``Authorization`` header alike. A token proves who signed in; what
that account may do is looked up again on every use (``auth.py``), so removing an account or changing its password
takes effect at once rather than when its tokens expire.
"""

from __future__ import annotations

import datetime
import logging
import os
import secrets
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import jwt

from .accounts import Account
from .config import Config, ConfigError

__all__ = ["SECRET_FILE", "Claims", "TokenError", "TokenIssuer", "load_secret"]

logger = logging.getLogger(__name__)

_ALGORITHM = "HS256"
_AUDIENCE = "hoichan"
SECRET_FILE = "secret.key"


class TokenError(Exception):
    """A token that proves nothing; ``reason`` says why, for the client (``expired`` means: sign in again)."""

    def __init__(self, reason: Literal["expired", "invalid"], message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class Claims:
    username: str
    role: str
    facility_id: str
    version: int
    issued_at: datetime.datetime
    expires_at: datetime.datetime


class TokenIssuer:
    def __init__(self, secret: bytes, ttl: datetime.timedelta) -> None:
        self._secret = secret
        self.ttl = ttl

    def issue(self, account: Account, now: datetime.datetime | None = None) -> str:
        """A token for this account, valid ``ttl`` from ``now`` (a past ``now`` gives an already expired token).

        ``ver`` is the account's token version: changing the password bumps it, which voids older tokens.
        """
        issued = (now or datetime.datetime.now(datetime.UTC)).replace(microsecond=0)
        claims = {
            "sub": account.username,
            "role": account.role,
            "fac": account.facility_id,
            "ver": account.token_version,
            "aud": _AUDIENCE,
            "iat": issued,
            "exp": issued + self.ttl,
        }
        return jwt.encode(claims, self._secret, algorithm=_ALGORITHM)

    def verify(self, token: str) -> Claims:
        """The claims of a genuine, unexpired token; ``TokenError`` for anything else."""
        try:
            data = jwt.decode(
                token,
                self._secret,
                algorithms=[_ALGORITHM],  # never trust the token's own "alg" (no "none", no key confusion)
                audience=_AUDIENCE,
                options={"require": ["sub", "role", "fac", "ver", "iat", "exp", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise TokenError("expired", "the sign-in has expired; sign in again") from None
        except jwt.InvalidTokenError:
            raise TokenError("invalid", "the sign-in token is not valid; sign in again") from None
        if not all(isinstance(data[key], str) for key in ("sub", "role", "fac")) or type(data["ver"]) is not int:
            raise TokenError("invalid", "the sign-in token is not valid; sign in again")
        return Claims(
            username=data["sub"],
            role=data["role"],
            facility_id=data["fac"],
            version=data["ver"],
            issued_at=datetime.datetime.fromtimestamp(data["iat"], datetime.UTC),
            expires_at=datetime.datetime.fromtimestamp(data["exp"], datetime.UTC),
        )


def load_secret(config: Config) -> bytes:
    """``auth.secret`` if set; else the key in ``<store.path>/secret.key``, generated on first use.

    Generated once and kept (mode 0600) so that sign-ins survive a restart. Written to a temp file and linked into
    place, so two processes starting together agree on one key and nobody ever reads a half-written file.
    """
    if config.auth.secret is not None:
        return config.auth.secret.encode()
    path = config.store.path / SECRET_FILE
    try:
        if not path.exists():
            _create_secret(path)
        key = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError("auth.secret", f"cannot use the generated key {path}: {exc}") from None
    if len(key) < 32:
        raise ConfigError("auth.secret", f"{path} holds fewer than 32 characters; delete it to generate a new one")
    return key.encode()


def _create_secret(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(secrets.token_hex(32) + "\n")
        try:
            os.link(temp, path)
            logger.info("generated the sign-in token key %s", path)
        except FileExistsError:
            pass  # another process made it first: use theirs
    finally:
        Path(temp).unlink(missing_ok=True)
