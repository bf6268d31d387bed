"""A real coturn (Debian's /usr/bin/turnserver) on loopback for the tests that exercise TURN paths.

Each instance gets free ports, a temporary config (TURN REST credentials: ``use-auth-secret`` with
``static-auth-secret``, no CLI, loopback peers allowed since the media server is on 127.0.0.1) and a self-signed
certificate for ``turns:``. A client trusts that certificate through ``SSL_CERT_FILE`` (``cert_env``).
"""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
from support import free_port

from signaling.config import Config
from signaling.tls import ensure_self_signed

TURNSERVER = shutil.which("turnserver") or "/usr/bin/turnserver"
SECRET = "turn-rest-secret-for-tests-0123"


def turnserver_available() -> bool:
    return Path(TURNSERVER).is_file()


needs_turnserver = pytest.mark.skipif(not turnserver_available(), reason="coturn's turnserver is not installed")


class TurnServer:
    def __init__(self, tmp: Path, secret: str = SECRET) -> None:
        self.tmp = tmp
        self.secret = secret
        self.port = free_port()
        self.tls_port = free_port()
        self.cert, self.key = ensure_self_signed(Config(store={"path": tmp}))
        self.log = tmp / "turnserver.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def urls(self) -> list[str]:
        return [f"turn:127.0.0.1:{self.port}?transport=udp", f"turn:127.0.0.1:{self.port}?transport=tcp",
                f"turns:127.0.0.1:{self.tls_port}?transport=tcp"]

    @property
    def cert_env(self) -> dict[str, str]:
        """Environment under which a client's TLS trusts this server's certificate."""
        return {"SSL_CERT_FILE": str(self.cert)}

    def start(self) -> None:
        low = random.randrange(49152, 64000)
        conf = self.tmp / "turnserver.conf"
        conf.write_text("\n".join([
            f"listening-port={self.port}",
            f"tls-listening-port={self.tls_port}",
            "listening-ip=127.0.0.1",
            "relay-ip=127.0.0.1",
            f"min-port={low}",
            f"max-port={low + 200}",
            "use-auth-secret",
            f"static-auth-secret={self.secret}",
            "realm=hoichan.test",
            f"cert={self.cert}",
            f"pkey={self.key}",
            "no-cli",
            "no-dtls",
            "allow-loopback-peers",
            "fingerprint",
            f"log-file={self.log}",
            "simple-log",
            "no-stdout-log",
            f"pidfile={self.tmp / 'turnserver.pid'}",
            "",
        ]))
        self.proc = subprocess.Popen([TURNSERVER, "-c", str(conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"turnserver exited: {self.log.read_text() if self.log.exists() else ''}")
            try:
                with socket.create_connection(("127.0.0.1", self.tls_port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("turnserver did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
