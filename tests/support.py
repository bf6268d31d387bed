"""Test helpers: a real Hoichan server in a subprocess (with test accounts), media sources for aiortc participants,
polling."""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import functools
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import numpy as np
import yaml
from aiortc import MediaStreamTrack
from av import AudioFrame, VideoFrame

from media import hooks
from signaling.accounts import hash_password

ROOT = Path(__file__).resolve().parent.parent

# aioice leaves loopback out of host candidates; everything in these tests stays on 127.0.0.1.
hooks.restrict_host_addresses(["127.0.0.1"])


# Every test server knows these accounts (one per role, two doctors at different tiers) and signs with SECRET, so a
# test can forge or expire tokens with signaling.tokens.TokenIssuer. Keyed by a short alias: ACCOUNTS["admin"].
SECRET = "test-secret-for-hoichan-tests-only-0123456789"
PASSWORD = "mat-khau-thu-nghiem"
ACCOUNTS: dict[str, dict[str, Any]] = {
    "admin": {"username": "quantri", "display_name": "Quản trị viên", "role": "admin", "facility": "so-y-te-lai-chau"},
    "technician": {
        "username": "ktv.lan",
        "display_name": "KTV. Lò Thị Lan",
        "role": "technician",
        "facility": "ttyt-muong-te",
    },
    "doctor": {
        "username": "bs.huyen",
        "display_name": "BS. Giàng A Páo",
        "role": "doctor",
        "facility": "ttyt-muong-te",
    },
    "specialist": {
        "username": "pgs.tim",
        "display_name": "PGS. Nguyễn Văn Tâm",
        "role": "doctor",
        "facility": "bv-bach-mai",
        "specialties": ["tim-mach"],
    },
    # For dispatch: central doctors in each wave of a cardiology call from Mường Tè (partners Bạch Mai and Việt Đức,
    # then Thái Nguyên and E, then every other hospital), one of another specialty, and another district's staff.
    "specialist2": {
        "username": "bs.hoa",
        "display_name": "BS. Trần Thị Hoa",
        "role": "doctor",
        "facility": "bv-bach-mai",
        "specialties": ["tim-mach", "noi-khoa"],
    },
    "thainguyen": {
        "username": "bs.nam",
        "display_name": "BS. Hoàng Văn Nam",
        "role": "doctor",
        "facility": "bv-tw-thai-nguyen",
        "specialties": ["tim-mach"],
    },
    "choray": {
        "username": "ts.lan",
        "display_name": "TS. Nguyễn Thị Lan",
        "role": "doctor",
        "facility": "bv-cho-ray",
        "specialties": ["tim-mach"],
    },
    "pediatrician": {
        "username": "bs.ha",
        "display_name": "BS. Phạm Thu Hà",
        "role": "doctor",
        "facility": "bv-nhi-tw",
        "specialties": ["nhi"],
    },
    "other_doctor": {
        "username": "bs.sin",
        "display_name": "BS. Lò Văn Sìn",
        "role": "doctor",
        "facility": "ttyt-sin-ho",
    },
    "other_technician": {
        "username": "ktv.sin",
        "display_name": "KTV. Tẩn Thị Mai",
        "role": "technician",
        "facility": "ttyt-sin-ho",
    },
}


@functools.cache
def _password_hash() -> str:
    return hash_password(PASSWORD)


def write_accounts(directory: Path) -> Path:
    """The accounts file of ACCOUNTS (hashed once per test run: argon2 is deliberately slow)."""
    path = directory / "accounts.yaml"
    entries = [{**account, "password_hash": _password_hash()} for account in ACCOUNTS.values()]
    path.write_text(yaml.safe_dump(entries, allow_unicode=True), encoding="utf-8")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """``hoichan serve`` in a subprocess, on a free port, with its own data directory and the test ACCOUNTS."""

    def __init__(self, tmp: Path, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.tmp = tmp
        self.env = {
            **os.environ,
            "HOICHAN_SERVER__PORT": str(self.port),
            "HOICHAN_SERVER__HOST": "127.0.0.1",
            "HOICHAN_MEDIA__ICE_ADDRESSES": '["127.0.0.1"]',
            "HOICHAN_STORE__PATH": str(tmp / "data"),
            "HOICHAN_RECORDING__DIRECTORY": str(tmp / "data" / "recordings"),
            "HOICHAN_AUTH__ACCOUNTS_FILE": str(write_accounts(tmp)),
            "HOICHAN_AUTH__SECRET": SECRET,
            **(env or {}),
        }
        self._tokens: dict[str, str] = {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = tmp / "server.log"

    def start(self) -> None:
        self._log = open(self.log, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "signaling.cli", "serve"],
            cwd=ROOT,
            env=self.env,
            start_new_session=True,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log.read_text()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("server did not start")

    def kill(self) -> None:
        """SIGKILL the server and its media workers at once, as a power cut or the OOM killer would."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        """SIGTERM (a clean shutdown); one that hangs is killed with its media workers, not left as orphans."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self._log.close()

    async def login(self, user: str) -> str:
        """A token for ACCOUNTS[user] (signed in once per server, then reused)."""
        if user not in self._tokens:
            body = {"username": ACCOUNTS[user]["username"], "password": PASSWORD}
            status, answer = await self.request("POST", "/api/login", json=body)
            assert status == 200, answer
            self._tokens[user] = answer["token"]
        return self._tokens[user]

    async def get(self, path: str, user: str | None = None) -> tuple[int, Any]:
        """GET ``path``, signed in as ACCOUNTS[user] when given."""
        token = await self.login(user) if user is not None else None
        return await self.request("GET", path, token=token)

    async def request(self, method: str, path: str, token: str | None = None, json: Any = None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        async with aiohttp.ClientSession() as session:
            async with session.request(method, self.url + path, headers=headers, json=json) as response:
                if response.content_type == "application/json":
                    return response.status, await response.json()
                return response.status, await response.text()


class PatternVideoTrack(MediaStreamTrack):
    """640×480 frames at 30 fps (by default) whose content changes every frame (so the encoder sends real data).

    Timestamps follow the wall clock, like a camera's: ``pause()`` leaves a real gap in the stream's timeline.
    """

    kind = "video"

    def __init__(self, width: int = 640, height: int = 480, noise: bool = False, fps: int = 30) -> None:
        """``noise``: add grain to every frame, as a cheap webcam does, so an encoder spends all of its bitrate."""
        super().__init__()
        self.width, self.height, self.fps = width, height, fps
        self.noise = np.random.default_rng(1) if noise else None
        self._n = 0
        self._start: float | None = None
        self._paused_until = 0.0

    def pause(self, seconds: float) -> None:
        """Send nothing for ``seconds`` (a camera turned off), then carry on."""
        self._paused_until = time.monotonic() + seconds

    async def recv(self) -> VideoFrame:
        if self._start is None:
            self._start = time.monotonic()
        next_at = self._start + self._n / self.fps
        await asyncio.sleep(max(0.0, max(next_at, self._paused_until) - time.monotonic()))
        if self._paused_until > next_at:
            self._n = int((time.monotonic() - self._start) * self.fps)
        pts, time_base = int((time.monotonic() - self._start) * 90000), fractions.Fraction(1, 90000)
        self._n += 1
        image = np.zeros((self.height, self.width, 3), dtype=np.uint8)
        image[:, :, 0] = (np.arange(self.width, dtype=np.uint16)[None, :] + self._n * 4) % 256
        image[:, :, 1] = (np.arange(self.height, dtype=np.uint16)[:, None] * 2) % 256
        if self.noise is not None:
            image += self.noise.integers(0, 48, image.shape, dtype=np.uint8)
        frame = VideoFrame.from_ndarray(image, format="bgr24")
        frame.pts, frame.time_base = pts, time_base
        return frame


class ToneAudioTrack(MediaStreamTrack):
    """A 440 Hz tone in real time: 20 ms frames of 960 samples at 48 kHz, what Opus packs one per packet."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self._samples = 0
        self._start: float | None = None

    async def recv(self) -> AudioFrame:
        if self._start is None:
            self._start = time.monotonic()
        else:
            await asyncio.sleep(max(0.0, self._start + self._samples / 48000 - time.monotonic()))
        t = (np.arange(960) + self._samples) / 48000
        data = (np.sin(2 * np.pi * 440 * t) * 8000).astype(np.int16).reshape(1, -1)
        frame = AudioFrame.from_ndarray(data, format="s16", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = 48000, self._samples, fractions.Fraction(1, 48000)
        self._samples += 960
        return frame


def server_fixture(name: str, env: dict[str, str]) -> Any:
    """A module-scoped fixture: a server of its own with these settings (``HOICHAN_...`` variables)."""

    @pytest.fixture(scope="module")
    def fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
        srv = Server(tmp_path_factory.mktemp(name), env=env)
        srv.start()
        yield srv
        srv.stop()

    return fixture


async def wait_for(predicate: Any, timeout: float, interval: float = 0.05) -> None:
    """Poll ``predicate`` until it is true; fail the test with its name if it never is."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")
