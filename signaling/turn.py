"""Time-limited TURN credentials, the TURN REST scheme that coturn's ``use-auth-secret`` checks.

Hoichan never stores or shares a TURN password: for each use it derives one from the secret it shares with the
TURN server. ``username = "<expiry unix time>:<who>"``, ``password = base64(HMAC-SHA1(secret, username))``; the
TURN server recomputes the password from the username and refuses it once the expiry has passed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import Any, Literal

from .config import TurnConfig

__all__ = ["TurnPath", "credentials", "ice_servers_by_path"]

TurnPath = Literal["turn-udp", "turn-tcp", "turn-tls"]


def credentials(secret: str, who: str, ttl_seconds: int, now: float | None = None) -> tuple[str, str]:
    """(username, password) valid for ``ttl_seconds`` from ``now``; ``who`` is only a label (an account name)."""
    expiry = int((time.time() if now is None else now) + ttl_seconds)
    username = f"{expiry}:{who.replace(':', '_')}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode()


def path_of(url: str) -> TurnPath:
    """Which link-test path a TURN URI serves: turns: is TLS; turn: is UDP unless ``?transport=tcp``."""
    if url.startswith("turns:"):
        return "turn-tls"
    return "turn-tcp" if url.endswith("?transport=tcp") else "turn-udp"


def ice_servers_by_path(config: TurnConfig, who: str, now: float | None = None) -> dict[TurnPath, dict[str, Any]]:
    """For each TURN path the configuration offers, an ``RTCIceServer`` (browser JSON shape) with fresh credentials
    and only that path's URI, so a client forced onto it (``iceTransportPolicy: relay``) can use nothing else."""
    if not config.urls or not config.secret:
        return {}
    username, password = credentials(config.secret, who, config.credential_ttl_minutes * 60, now)
    servers: dict[TurnPath, dict[str, Any]] = {}
    for url in config.urls:
        servers.setdefault(path_of(url), {"urls": [url], "username": username, "credential": password})
    return servers
