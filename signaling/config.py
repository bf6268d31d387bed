"""Hoichan's settings: one validated, immutable model built from defaults, a YAML file and ``HOICHAN_*`` variables.

Why this shape: a typo or a bad value must stop the server at start with one line that names the key, instead of
surfacing mid-consultation as a confusing failure; and every other module reads a frozen object, never raw dicts.

Priority: environment > file > embedded defaults, so the server runs with no file at all and a container or a test
can change one key without writing a file. ``HOICHAN_<SECTION>__<KEY>[__<SUBKEY>]`` sets a key (case-insensitive),
e.g. ``HOICHAN_SERVER__PORT=9000`` or ``HOICHAN_SERVER__TLS__SELF_SIGNED=true``; lists and mappings are JSON, e.g.
``HOICHAN_MEDIA__ICE_ADDRESSES='["127.0.0.1"]'``. A ``HOICHAN_`` variable without ``__`` (say ``HOICHAN_CONFIG``)
is not a key override and is left to whoever reads it.

Relative paths written in the file are relative to the file's directory (the file and its data travel together);
relative paths from the environment or the defaults are relative to the working directory. Every path in a
``Config`` is absolute.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import os
import re
import types
import zoneinfo
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, NoReturn, Union, get_args, get_origin
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

__all__ = [
    "ENV_PREFIX",
    "AuthConfig",
    "ClusterConfig",
    "Config",
    "ConfigError",
    "DirectoryConfig",
    "DispatchConfig",
    "IceServer",
    "LinkTestConfig",
    "LoggingConfig",
    "MediaConfig",
    "MetricsConfig",
    "RecordingConfig",
    "RingSeconds",
    "SchedulerConfig",
    "ServerConfig",
    "SharingConfig",
    "StoreConfig",
    "TlsConfig",
    "TurnConfig",
    "load_config",
]

ENV_PREFIX = "HOICHAN_"
_ENV_SEPARATOR = "__"
_ERROR_TYPE = "hoichan"
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]


class ConfigError(ValueError):
    """A setting is missing, malformed or out of range; ``str()`` is one line an operator can act on.

    ``problems`` keeps every ``(key, what is wrong)`` pair, ``key``/``problem`` the first, for callers and tests.
    """

    def __init__(self, key: str, problem: str, *more: tuple[str, str]) -> None:
        self.problems: tuple[tuple[str, str], ...] = tuple(
            (_one_line(k), _one_line(p)) for k, p in ((key, problem), *more)
        )
        self.key, self.problem = self.problems[0]
        super().__init__(str(self))

    def __str__(self) -> str:
        return "config error: " + "; ".join(f"{key}: {problem}" for key, problem in self.problems)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _fail(problem: str, key: str | None = None) -> NoReturn:
    """Raise a validation error with our own wording; ``key`` names a sub-key when a model-level check fails."""
    raise PydanticCustomError(_ERROR_TYPE, "{problem}", {"problem": problem, "key": key})


def _show(value: Any) -> str:
    """How a rejected value appears in a message: short, one line, numbers unquoted."""
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, str):
        try:
            float(value)
            return value.strip()
        except ValueError:
            pass
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _absolute(path: Path | None) -> Path | None:
    """Pin a path to the working directory at load time, so a later chdir cannot move the data."""
    if path is None:
        return None
    return Path(os.path.abspath(path.expanduser()))


def _existing_file(path: Path | None) -> Path | None:
    path = _absolute(path)
    if path is not None and not path.is_file():
        _fail(f"file not found: {path}" if not path.exists() else f"not a regular file: {path}")
    return path


def _ip_address(value: str) -> str:
    try:
        address = ipaddress.ip_address(value.strip())
    except ValueError:
        _fail(f"not an IP address (got {_show(value)})")
    if address.is_unspecified:
        _fail(f"{address} is not an interface address; leave the list empty to use every interface")
    return str(address)


_ICE_URL = re.compile(
    r"^(?P<scheme>stun|turn|turns):(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+)(?::(?P<port>\d{1,5}))?"
    r"(?P<query>\?transport=(?:udp|tcp))?$"
)


def _ice_url(value: str) -> str:
    scheme = value.split(":", 1)[0].lower() if ":" in value else ""
    if scheme not in ("stun", "turn", "turns"):
        _fail(f"must start with stun:, turn: or turns: (got {_show(value)})")
    match = _ICE_URL.match(value.strip())
    if match is None or (match["port"] is not None and not 1 <= int(match["port"]) <= 65535):
        _fail(f"not a valid {scheme}: URI, expected {scheme}:host[:port] (got {_show(value)})")
    if match["scheme"] == "stun" and match["query"]:
        _fail(f"stun: URIs take no ?transport= (got {_show(value)})")
    return value.strip()


def _redis_url(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        _fail(f"not a valid URL (got {_show(value)})")
    if parts.scheme not in ("redis", "rediss") or not parts.hostname:
        _fail(f"must be a redis:// or rediss:// URL with a host (got {_show(value)})")
    return value


IceUrl = Annotated[str, AfterValidator(_ice_url)]
RedisUrl = Annotated[str | None, AfterValidator(_redis_url)]
AbsolutePath = Annotated[Path, AfterValidator(_absolute)]
ExistingFile = Annotated[Path | None, AfterValidator(_existing_file)]
IpAddress = Annotated[str, AfterValidator(_ip_address)]

_HOST_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"^{_HOST_LABEL}(?:\.{_HOST_LABEL})*\.?$")


class _Section(BaseModel):
    """Base of every section: immutable, unknown keys rejected, defaults validated like any input."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True, use_attribute_docstrings=True)

    @model_validator(mode="before")
    @classmethod
    def _normalise(cls, data: Any) -> Any:
        """Read YAML the way an operator means it, before field validation.

        A section left empty (all keys commented out) is ``null``: all defaults. An empty string for an optional
        key means "unset", so ``HOICHAN_STORE__REDIS_URL=`` clears it. ``true`` is not the number 1 (YAML's
        ``port: yes`` would otherwise bind port 1).
        """
        if data is None:
            return {}
        if not isinstance(data, Mapping):
            return data
        out = dict(data)
        for key, value in data.items():
            field = cls.model_fields.get(key) if isinstance(key, str) else None
            if field is None:
                continue
            if isinstance(value, str) and not value.strip() and field.default is None:
                out[key] = None
            elif isinstance(value, bool) and _is_number_field(field.annotation):
                _fail(f"must be a number (got {_show(value)})", key)
        return out


class TlsConfig(_Section):
    """HTTPS for the built-in server: browsers expose camera and microphone only to secure origins."""

    cert: ExistingFile = None
    """PEM certificate chain; needs ``key``."""
    key: ExistingFile = None
    """PEM private key; needs ``cert``."""
    self_signed: bool = False
    """Generate (once) a self-signed certificate under ``<store.path>/tls/`` for a LAN trial."""

    @model_validator(mode="after")
    def _consistent(self) -> TlsConfig:
        if self.cert is not None and self.key is None:
            _fail("required when cert is set", "key")
        if self.key is not None and self.cert is None:
            _fail("required when key is set", "cert")
        if self.self_signed and self.cert is not None:
            _fail("cannot be combined with cert/key: use one or the other", "self_signed")
        return self

    @property
    def enabled(self) -> bool:
        """Whether the built-in server speaks HTTPS."""
        return self.cert is not None or self.self_signed


class ServerConfig(_Section):
    """The HTTP + socket.io listener."""

    host: str = "127.0.0.1"
    """Address or name to bind; 0.0.0.0 or :: for every interface."""
    port: int = Field(default=8080, ge=1, le=65535)
    public_url: str | None = None
    """URL people open (e.g. behind a reverse proxy); only used for the printed URL and the self-signed cert."""
    tls: TlsConfig = Field(default_factory=TlsConfig)
    max_message_bytes: int = Field(default=65536, ge=1024, le=16 * 1024 * 1024)
    """Largest socket.io payload accepted; bounds what one client can make the server parse."""
    reconnect_grace_seconds: float = Field(default=20.0, ge=0, le=3600)
    """How long a dropped participant keeps its seat (and media) before the room sees it leave."""

    @field_validator("host")
    @classmethod
    def _valid_host(cls, value: str) -> str:
        value = value.strip()
        try:
            return str(ipaddress.ip_address(value))
        except ValueError:
            pass
        if "://" in value:
            _fail(f"must be a host name or IP address, not a URL (got {_show(value)})")
        if not _HOSTNAME.match(value):
            _fail(f"must be a host name or IP address (got {_show(value)})")
        return value

    @field_validator("public_url")
    @classmethod
    def _valid_public_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip()
        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018 - raises on a bad port
        except ValueError:
            _fail(f"not a valid URL (got {_show(value)})")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            _fail(f"must be an http:// or https:// URL with a host (got {_show(value)})")
        return value

    @property
    def public_host(self) -> str | None:
        """Host name of ``public_url``, if set."""
        return urlsplit(self.public_url).hostname if self.public_url else None


class IceServer(_Section):
    """One STUN/TURN server, in the shape of the browser's ``RTCIceServer``."""

    urls: tuple[IceUrl, ...] = Field(min_length=1)
    username: str | None = None
    credential: str | None = None

    @field_validator("urls", mode="before")
    @classmethod
    def _single_url(cls, value: Any) -> Any:
        """``RTCIceServer.urls`` may be one string; accept that too."""
        return (value,) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _turn_needs_credentials(self) -> IceServer:
        if any(not url.startswith("stun:") for url in self.urls):
            if self.username is None:
                _fail("required for turn:/turns: URIs", "username")
            if self.credential is None:
                _fail("required for turn:/turns: URIs", "credential")
        return self

    def as_rtc_dict(self) -> dict[str, Any]:
        """The JSON form a browser's ``RTCPeerConnection({iceServers})`` takes (sent in the join ack)."""
        out: dict[str, Any] = {"urls": list(self.urls)}
        if self.username is not None:
            out["username"] = self.username
        if self.credential is not None:
            out["credential"] = self.credential
        return out


class MediaConfig(_Section):
    """The aiortc relay's network side and room size."""

    ice_servers: tuple[IceServer, ...] = ()
    """Empty by default: no public STUN server is assumed reachable."""
    ice_addresses: tuple[IpAddress, ...] = ()
    """Addresses to gather host candidates on; empty = every non-loopback interface."""
    udp_port_min: int | None = Field(default=None, ge=1024, le=65535)
    """With ``udp_port_max``: the UDP range media uses, so a firewall can open exactly that."""
    udp_port_max: int | None = Field(default=None, ge=1024, le=65535)
    room_max_participants: int = Field(default=8, ge=2, le=32)
    """The relay forwards every stream to every participant: cost grows with the square of this."""
    workers: Annotated[int, Field(ge=0, le=64)] | Literal["auto"] = "auto"
    """Media worker processes, rooms spread across them; "auto" = one per core, 0 = inside the server process."""
    pin_workers: bool = False
    """Pin worker i to core i (a dedicated media host); leave off on machines shared with other services."""
    simulcast: bool = True
    """Ask publishing browsers for three video layers, so each subscriber gets the one its link carries."""
    downlink_start_kbps: float = Field(default=600, ge=50, le=20000)
    """A new subscriber's downlink estimate until its own feedback arrives; probing moves it from there."""

    @model_validator(mode="after")
    def _port_range(self) -> MediaConfig:
        if (self.udp_port_min is None) != (self.udp_port_max is None):
            missing = "udp_port_max" if self.udp_port_max is None else "udp_port_min"
            other = "udp_port_min" if missing == "udp_port_max" else "udp_port_max"
            _fail(f"required when {other} is set", missing)
        if self.udp_port_min is not None and self.udp_port_max is not None and self.udp_port_min > self.udp_port_max:
            _fail(f"must be ≥ udp_port_min ({self.udp_port_min}) (got {self.udp_port_max})", "udp_port_max")
        return self


class StoreConfig(_Section):
    """Where rooms and sessions are kept: embedded on disk, or Redis when several servers share state."""

    path: AbsolutePath = Path("data")
    redis_url: RedisUrl = None
    """redis:// or rediss:// URL; unset = embedded store under ``path``."""


class RecordingConfig(_Section):
    """Where consultation recordings are written."""

    directory: AbsolutePath = Path("data/recordings")
    policy: Literal["always", "never", "ask"] = "ask"
    """Whether rooms are recorded; "ask": the participant who opens the room chooses when joining."""
    retention_days: int = Field(default=0, ge=0, le=36500)
    """Delete recordings this many days after they end, unless on legal hold; 0 = keep forever."""


class AuthConfig(_Section):
    """Sign-in: where accounts come from, how tokens are signed, and whether people without an account may join."""

    accounts_file: ExistingFile = None
    """YAML list of accounts merged into the store at start (see accounts.example.yaml); unset = store only."""
    secret: str | None = None
    """HS256 key for sign-in tokens (≥ 32 characters); unset = generated once into ``<store.path>/secret.key``."""
    token_ttl_minutes: int = Field(default=720, ge=1, le=60 * 24 * 30)
    """How long a sign-in lasts; a token is checked when a page connects, not again mid-consultation."""
    allow_guests: bool = True
    """Let anyone with a room link join that room under a name they type (role "guest"); false in production."""

    @field_validator("secret")
    @classmethod
    def _strong_secret(cls, value: str | None) -> str | None:
        # The value itself never appears in the message: it is a secret even when it is too short.
        if value is not None and len(value.strip()) < 32:
            _fail(f"must be at least 32 characters (got {len(value.strip())}); leave unset to generate one")
        return None if value is None else value.strip()


class SharingConfig(_Section):
    """What participants share in a room (medical images, vitals, annotations), kept with the consult record."""

    max_image_bytes: int = Field(default=10 * 1024 * 1024, ge=64 * 1024, le=100 * 1024 * 1024)
    """Largest image upload accepted, in bytes; a phone photo of an X-ray or a wound is 1-6 MB."""
    max_image_pixels: int = Field(default=50_000_000, ge=1_000_000, le=80_000_000)
    """Largest image accepted, in pixels (width × height): a small file that decodes to a huge bitmap is refused."""
    annotation_rate: float = Field(default=15.0, gt=0, le=1000)
    """Annotation events (pointer moves, pins, strokes) one participant may send per second, on average."""
    annotation_burst: int = Field(default=30, ge=1, le=10_000)
    """How many annotation events one participant may send at once before the rate applies."""
    directory: AbsolutePath | None = None
    """Where shared images are kept; None: ``<store.path>/shared``. In a cluster, one shared filesystem mounted at
    the same path on every signaling process (as ``recording.directory``)."""


_SAMPLE_DIRECTORY = Path(__file__).resolve().parent.parent / "directory.yaml"


class DirectoryConfig(_Section):
    """Where the directory (facilities, connection points, specialties, partnerships) comes from."""

    file: Annotated[Path, AfterValidator(_existing_file)] = _SAMPLE_DIRECTORY
    """YAML file the operator edits; the default is the sample shipped with Hoichan."""
    reload_seconds: float = Field(default=2.0, ge=0, le=3600)
    """How often the file is checked for changes; 0 = only on ``POST /api/directory/reload``."""


class RingSeconds(_Section):
    """How long each wave of a consult rings before it escalates, by urgency."""

    routine: float = Field(default=180.0, gt=0, le=3600)
    urgent: float = Field(default=60.0, gt=0, le=3600)
    emergency: float = Field(default=30.0, gt=0, le=3600)


class DispatchConfig(_Section):
    """How a consult request rings central doctors: partners first, then every central hospital with the specialty."""

    ring_seconds: RingSeconds = Field(default_factory=RingSeconds)
    partners_per_wave: int = Field(default=2, ge=1, le=32)
    """Partner hospitals rung together in one wave, in the directory's order."""
    timezone: str = "Asia/Ho_Chi_Minh"
    """IANA time zone of the consult log's days (statistics by day, date ranges, CSV)."""

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value.strip())
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            _fail(f"not a known IANA time zone, e.g. Asia/Ho_Chi_Minh (got {_show(value)})")
        return value.strip()


class SchedulerConfig(_Section):
    """Scheduled sessions: weekly slots and one-off sessions that open a room and notify their parties."""

    tick_seconds: float = Field(default=5.0, ge=0.1, le=300)
    """How often the scheduler looks for sessions due to open; a session opens at most this late."""
    timezone: str = "Asia/Ho_Chi_Minh"
    """Time zone of a schedule's weekday and time when the admin does not name one (IANA name)."""
    upcoming_days: int = Field(default=14, ge=1, le=90)
    """How far ahead the list of upcoming sessions looks."""

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        value = value.strip()
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            _fail(f"not a known time zone, e.g. Asia/Ho_Chi_Minh (got {_show(value)})")
        return value


def _turn_url(value: str) -> str:
    if not value.startswith(("turn:", "turns:")):
        _fail(f"must be a turn: or turns: URI (got {_show(value)})")
    return value


TurnUrl = Annotated[IceUrl, AfterValidator(_turn_url)]


class TurnConfig(_Section):
    """A TURN server that accepts time-limited credentials (coturn's ``use-auth-secret``, the TURN REST scheme)."""

    urls: tuple[TurnUrl, ...] = ()
    """turn:/turns: URIs of the TURN server; empty = no TURN (link tests then report the TURN paths as not set up)."""
    secret: str | None = None
    """The shared secret, coturn's ``static-auth-secret``; credentials are HMAC-SHA1 of it, never stored."""
    credential_ttl_minutes: int = Field(default=60, ge=1, le=60 * 24 * 7)
    """How long a handed-out TURN credential stays valid."""

    @model_validator(mode="after")
    def _secret_with_urls(self) -> TurnConfig:
        if self.urls and not self.secret:
            _fail("required when urls are set (coturn's static-auth-secret)", "secret")
        if self.secret is not None and len(self.secret) < 16:
            _fail(f"must be at least 16 characters (got {len(self.secret)})", "secret")
        return self


class LinkTestConfig(_Section):
    """The technician's link test of a connection point against this media server (docs/linktest.md)."""

    ping_seconds: float = Field(default=1.5, ge=0.5, le=30)
    """How long RTT and jitter are sampled (a ping every ping_interval_ms)."""
    loss_seconds: float = Field(default=6.0, ge=0.5, le=30)
    """Longest loss sampling after the ramps (small probes both ways, below the throughput found; it ends sooner
    once it has 2400 samples)."""
    ping_interval_ms: float = Field(default=20.0, ge=5, le=200)
    """Gap between pings: 20 ms is an audio packet's pace. Denser pings fill a slow lossy far link with their SCTP
    acknowledgements (12.5 ms queued 300 ms at 128 kbit/s, 100 ms and 5 % loss)."""
    step_seconds: float = Field(default=0.4, ge=0.1, le=5)
    """Length of each throughput ramp step."""
    ramp_seconds: float = Field(default=8.0, ge=1, le=60)
    """Longest a throughput ramp may take, per direction."""
    max_kbps: float = Field(default=3000.0, ge=100, le=100_000)
    """Highest rate a ramp offers; a link that carries it is reported as "at least" this (720p needs ~1200)."""
    connect_timeout_seconds: float = Field(default=8.0, ge=1, le=60)
    """How long each path (UDP, TURN over UDP/TCP/TLS) may take to connect before it counts as blocked."""
    min_interval_seconds: float = Field(default=60.0, ge=0, le=86_400)
    """Least time between two test starts for one connection point (tests flood the link)."""
    max_concurrent: int = Field(default=2, ge=1, le=64)
    """Tests running at once on this server, all points together."""


class LoggingConfig(_Section):
    """Log verbosity and shape."""

    level: LogLevel = "INFO"
    format: Literal["text", "json"] = "text"
    """"json": one JSON object per line, with room and participant ids as fields (for a log collector)."""

    @field_validator("level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.strip().upper()
            if value not in get_args(LogLevel):
                _fail(f"must be one of {', '.join(get_args(LogLevel))} (got {_show(value.lower())})")
        return value


_NODE_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_KEY_PREFIX = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


class ClusterConfig(_Section):
    """Several signaling processes and media nodes sharing one Redis (LiveKit's model); unset = one process."""

    role: Literal["all", "signaling", "media"] = "all"
    """What this process runs: signaling and media ("all"), only signaling, or only a media node."""
    redis_url: RedisUrl = None
    """Redis for room placement, node state and the command bus; unset = embedded, no Redis."""
    key_prefix: str = "hoichan:"
    """Prefix of every Redis key, so several deployments (or tests) can share one Redis."""
    node_id: str | None = None
    """This media node's name in Redis; unset = host name and process id."""
    heartbeat_interval: float = Field(default=0.5, gt=0, le=60)
    """Seconds between a media node's load reports (each one renews its liveness)."""
    node_timeout: float = Field(default=2.0, gt=0, le=600)
    """Seconds without a heartbeat after which a media node counts as dead and its rooms move."""
    request_timeout: float = Field(default=10.0, gt=0, le=120)
    """Seconds signaling waits for a media node's reply before failing the request."""

    @field_validator("node_id")
    @classmethod
    def _valid_node_id(cls, value: str | None) -> str | None:
        if value is not None and not _NODE_ID.match(value.strip()):
            _fail(f"must be 1-64 letters, digits, '_', '.' or '-' (got {_show(value)})")
        return None if value is None else value.strip()

    @field_validator("key_prefix")
    @classmethod
    def _valid_prefix(cls, value: str) -> str:
        if not _KEY_PREFIX.match(value):
            _fail(f"must be 1-64 letters, digits, '_', '.', ':' or '-' (got {_show(value)})")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> ClusterConfig:
        if self.role != "all" and self.redis_url is None:
            _fail(f"required when role is {self.role} (signaling and media nodes meet in Redis)", "redis_url")
        if self.node_timeout <= self.heartbeat_interval:
            _fail(f"must be > heartbeat_interval ({self.heartbeat_interval:g}) (got {self.node_timeout:g})",
                  "node_timeout")
        return self

    @property
    def enabled(self) -> bool:
        """Whether this process is part of a cluster (talks to Redis)."""
        return self.redis_url is not None


class MetricsConfig(_Section):
    """``GET /metrics`` (Prometheus text format) on every process."""

    token: str | None = None
    """Bearer token a Prometheus scraper sends; unset = only signed-in admins may read /metrics."""

    @field_validator("token")
    @classmethod
    def _long_token(cls, value: str | None) -> str | None:
        if value is not None and len(value.strip()) < 16:
            _fail(f"must be at least 16 characters (got {len(value.strip())})")
        return None if value is None else value.strip()


class Config(_Section):
    """Everything Hoichan can be told; ``Config()`` is the all-defaults configuration.

    Sections are built per ``Config`` (not at import), so relative default paths pin to the working directory then.
    """

    server: ServerConfig = Field(default_factory=ServerConfig)
    media: MediaConfig = Field(default_factory=MediaConfig)
    store: StoreConfig = Field(default_factory=StoreConfig)
    recording: RecordingConfig = Field(default_factory=RecordingConfig)
    auth: AuthConfig = Field(default_factory=AuthConfig)
    sharing: SharingConfig = Field(default_factory=SharingConfig)
    directory: DirectoryConfig = Field(default_factory=DirectoryConfig)
    dispatch: DispatchConfig = Field(default_factory=DispatchConfig)
    scheduler: SchedulerConfig = Field(default_factory=SchedulerConfig)
    turn: TurnConfig = Field(default_factory=TurnConfig)
    linktest: LinkTestConfig = Field(default_factory=LinkTestConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    cluster: ClusterConfig = Field(default_factory=ClusterConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)

    @property
    def base_url(self) -> str:
        """The URL to print for people to open: ``public_url``, else built from host, port and TLS."""
        if self.server.public_url:
            return self.server.public_url
        host = self.server.host
        if host in ("0.0.0.0", "::"):
            host = "localhost"
        if ":" in host:
            host = f"[{host}]"
        scheme = "https" if self.server.tls.enabled else "http"
        return f"{scheme}://{host}:{self.server.port}/"


# --------------------------------------------------------------------------------------------- loading


def load_config(path: str | os.PathLike[str] | None = None, env: Mapping[str, str] = os.environ) -> Config:
    """Build the ``Config`` from embedded defaults, the YAML file at ``path`` (if any) and ``env``.

    Raises ``ConfigError`` (one line, naming the key) for a missing or unreadable file, bad YAML, an unknown key,
    or a bad value.
    """
    data: dict[str, Any] = {}
    if path is not None:
        file = Path(os.path.abspath(Path(path).expanduser()))
        data = _read_yaml(file)
        _resolve_paths(Config, data, file.parent)
    overrides, sources = _env_overrides(env)
    merged = _deep_merge(data, overrides)
    try:
        return Config.model_validate(merged)
    except ValidationError as exc:
        problems = _merge_alternatives([_describe(error, sources) for error in exc.errors(include_url=False)])
        raise ConfigError(*problems[0], *problems[1:]) from None


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key written twice in one mapping: the second would silently win."""


def _construct_unique_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node, deep=True)
        try:
            duplicate = key in seen
            seen.add(key)
        except TypeError:
            continue
        if duplicate:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_unique_mapping)


def _read_yaml(file: Path) -> dict[str, Any]:
    where = str(file)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(where, "file not found") from None
    except IsADirectoryError:
        raise ConfigError(where, "is a directory, not a file") from None
    except UnicodeDecodeError:
        raise ConfigError(where, "not UTF-8 text") from None
    except OSError as exc:
        raise ConfigError(where, f"cannot read: {exc.strerror or exc}") from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ConfigError(where, f"invalid YAML{at}: {exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(where, f"invalid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(where, f"must be a mapping of sections (server, media, ...), got {_show(data)}")
    return data


def _unwrap(annotation: Any) -> Any:
    """``Optional[X]`` → ``X``."""
    if get_origin(annotation) in (Union, types.UnionType):
        args = [arg for arg in get_args(annotation) if arg is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _is_number_field(annotation: Any) -> bool:
    """Whether a field takes an int or float, alone, optional, or as one member of a union."""
    members = get_args(annotation) if get_origin(annotation) in (Union, types.UnionType) else (annotation,)
    for member in members:
        if get_origin(member) is Annotated:
            member = get_args(member)[0]
        if member in (int, float):
            return True
    return False


def _section_of(annotation: Any) -> type[_Section] | None:
    """The section model a field holds, directly or as list items; None for a plain value."""
    annotation = _unwrap(annotation)
    if get_origin(annotation) in (tuple, list):
        annotation = _unwrap(get_args(annotation)[0])
    if isinstance(annotation, type) and issubclass(annotation, _Section):
        return annotation
    return None


def _is_structured(annotation: Any) -> bool:
    annotation = _unwrap(annotation)
    return get_origin(annotation) in (tuple, list) or _section_of(annotation) is not None


def _resolve_paths(model: type[_Section], data: dict[str, Any], base: Path) -> None:
    """Make the file's relative paths relative to the file's directory (in place, before validation)."""
    for key, value in data.items():
        field = model.model_fields.get(key) if isinstance(key, str) else None
        if field is None:
            continue
        annotation = _unwrap(field.annotation)
        if annotation is Path and isinstance(value, str) and value.strip():
            expanded = Path(value.strip()).expanduser()
            data[key] = str(expanded if expanded.is_absolute() else base / expanded)
        elif isinstance(value, dict) and (section := _section_of(annotation)) is not None:
            _resolve_paths(section, value, base)


def _env_overrides(env: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """Turn ``HOICHAN_A__B=v`` variables into ``{"a": {"b": v}}``, plus which variable set which dotted key."""
    tree: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for name in sorted(env):
        if not name.upper().startswith(ENV_PREFIX) or _ENV_SEPARATOR not in name[len(ENV_PREFIX) :]:
            continue
        parts = [part.lower() for part in name[len(ENV_PREFIX) :].split(_ENV_SEPARATOR)]
        if not all(parts):
            raise ConfigError(name, f"malformed name, expected {ENV_PREFIX}<SECTION>__<KEY>")
        model: type[_Section] | None = Config
        annotation: Any = None
        for depth, part in enumerate(parts):
            dotted = ".".join(parts[: depth + 1])
            if model is None or get_origin(_unwrap(annotation)) in (tuple, list):
                raise ConfigError(f"{dotted} (from {name})", f"unknown key: {'.'.join(parts[:depth])} has no sub-keys")
            if part not in model.model_fields:
                raise ConfigError(f"{dotted} (from {name})", "unknown key" + _suggest(part, model))
            annotation = model.model_fields[part].annotation
            model = _section_of(annotation)
        dotted = ".".join(parts)
        value: Any = env[name]
        if _is_structured(annotation) and value.strip():
            try:
                value = json.loads(value)
            except json.JSONDecodeError as exc:
                is_list = get_origin(_unwrap(annotation)) in (tuple, list)
                shape = 'a JSON list, e.g. ["a", "b"]' if is_list else 'a JSON object, e.g. {"key": "value"}'
                raise ConfigError(f"{dotted} (from {name})", f"must be {shape} ({exc.msg})") from None
        node = tree
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        node[parts[-1]] = value
        sources[dotted] = name
    return tree, sources


def _deep_merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``override`` wins key by key; mappings merge, anything else replaces (lists included)."""
    out = dict(base)
    for key, value in override.items():
        current = out.get(key)
        if isinstance(value, Mapping) and (isinstance(current, Mapping) or current is None):
            out[key] = _deep_merge(dict(current or {}), value)
        else:
            out[key] = value
    return out


def _dotted(loc: Sequence[str | int]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _suggest(key: Any, model: type[_Section] | None) -> str:
    if model is None:
        return ""
    known = list(model.model_fields)
    close = difflib.get_close_matches(str(key).lower(), known, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else f" (known keys: {', '.join(known)})"


def _model_at(loc: Sequence[str | int]) -> type[_Section] | None:
    model: type[_Section] | None = Config
    for part in loc:
        if isinstance(part, int):
            continue
        if model is None or part not in model.model_fields:
            return None
        model = _section_of(model.model_fields[part].annotation)
    return model


_TYPE_WORDS = {
    "int_parsing": "must be a whole number",
    "int_type": "must be a whole number",
    "int_from_float": "must be a whole number",
    "float_parsing": "must be a number",
    "float_type": "must be a number",
    "bool_parsing": "must be true or false",
    "bool_type": "must be true or false",
    "string_type": "must be a string",
    "path_type": "must be a path",
    "tuple_type": "must be a list",
    "list_type": "must be a list",
    "model_type": "must be a mapping of keys",
    "model_attributes_type": "must be a mapping of keys",
    "dict_type": "must be a mapping of keys",
}
_BOUNDS = {
    "greater_than_equal": ("≥", "ge"),
    "less_than_equal": ("≤", "le"),
    "greater_than": (">", "gt"),
    "less_than": ("<", "lt"),
}


def _describe(error: Mapping[str, Any], sources: Mapping[str, str]) -> tuple[str, str, str | None]:
    """One pydantic error → ``(dotted key, what is wrong, the rejected value as shown or None)``, in an operator's words."""
    loc: list[str | int] = list(error["loc"])
    kind: str = error["type"]
    ctx: Mapping[str, Any] = error.get("ctx") or {}
    got: str | None = _show(error.get("input"))
    if kind == _ERROR_TYPE:
        if ctx.get("key"):
            loc.append(ctx["key"])
        problem, got = str(ctx["problem"]), None
    elif kind == "extra_forbidden":
        problem, got = "unknown key" + _suggest(loc[-1], _model_at(loc[:-1])), None
    elif kind == "missing":
        problem, got = "required", None
    elif kind in _BOUNDS:
        symbol, name = _BOUNDS[kind]
        bound = ctx.get(name)
        if isinstance(bound, float) and bound.is_integer():
            bound = int(bound)
        problem = f"must be {symbol} {bound}"
    elif kind == "too_short" and isinstance(error.get("input"), (list, tuple)) and not error.get("input"):
        problem, got = "must not be empty", None
    elif kind == "literal_error":
        problem = f"must be {ctx.get('expected')}"
    elif kind in _TYPE_WORDS:
        problem = _TYPE_WORDS[kind]
    else:
        message = str(error.get("msg", kind))
        problem = message[:1].lower() + message[1:]
    loc = _key_path(loc)
    key = _dotted(loc) or "(top level)"
    dotted_plain = ".".join(str(part) for part in loc if isinstance(part, str))
    for prefix, variable in sources.items():
        if dotted_plain == prefix or dotted_plain.startswith(prefix + "."):
            key += f" (from {variable})"
            break
    return key, problem, got


def _key_path(loc: Sequence[str | int]) -> list[str | int]:
    """Drop what pydantic adds to a location that is not a key, e.g. the member tags of a union (``workers.int``)."""
    out: list[str | int] = []
    model: type[_Section] | None = Config
    past_leaf = False
    for part in loc:
        if isinstance(part, int):
            out.append(part)
        elif past_leaf:
            continue
        else:
            out.append(part)
            if model is None or part not in model.model_fields:
                past_leaf = True
                continue
            model = _section_of(model.model_fields[part].annotation)
            past_leaf = model is None
    return out


def _merge_alternatives(problems: Sequence[tuple[str, str, str | None]]) -> list[tuple[str, str]]:
    """One problem per key: a union's members each fail, say so once ("must be ≥ 0 or 'auto' (got -1)")."""
    grouped: dict[str, list[tuple[str, str | None]]] = {}
    for key, problem, got in problems:
        if (problem, got) not in grouped.setdefault(key, []):
            grouped[key].append((problem, got))
    merged: list[tuple[str, str]] = []
    for key, alternatives in grouped.items():
        text = alternatives[0][0]
        for problem, _ in alternatives[1:]:
            text += " or " + (problem.removeprefix("must be ") if text.startswith("must be ") else problem)
        shown = next((got for _, got in alternatives if got is not None), None)
        merged.append((key, text if shown is None else f"{text} (got {shown})"))
    return merged
