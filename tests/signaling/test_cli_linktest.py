"""``hoichan linktest``: the headless link test, its JSON for monitoring, and exit codes by verdict."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from support import ACCOUNTS, PASSWORD, ROOT, Server, server_fixture

from signaling.cli_linktest import EXIT_CODES, EXIT_REFUSED, EXIT_USAGE, describe

server = server_fixture("cli-linktest", {
    "HOICHAN_LINKTEST__PING_SECONDS": "1",
    "HOICHAN_LINKTEST__LOSS_SECONDS": "1",
    "HOICHAN_LINKTEST__MAX_KBPS": "800",
    "HOICHAN_LINKTEST__MIN_INTERVAL_SECONDS": "300",
})


def hoichan(*args: str, env: dict[str, str] | None = None, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "signaling.cli", "linktest", *args], cwd=ROOT, input=stdin, capture_output=True,
        text=True, timeout=90, env={**os.environ, **(env or {})},
    )


def test_json_for_monitoring_and_an_exit_code_by_verdict(server: Server) -> None:
    signed_in = {"HOICHAN_USERNAME": ACCOUNTS["technician"]["username"], "HOICHAN_PASSWORD": PASSWORD}
    done = hoichan("--server", server.url, "--point", "ttyt-muong-te-cc", "--json", "--local-address", "127.0.0.1",
                   env=signed_in)
    result = json.loads(done.stdout)
    assert result["status"] == "complete" and result["pointId"] == "ttyt-muong-te-cc"
    assert result["verdict"]["tier"] == "360p"  # loopback, up to the 800 kbit/s ceiling: ≥ 400, < 1200
    assert done.returncode == EXIT_CODES["360p"] == 1, done.stderr
    assert result["downAtLeast"] and result["upAtLeast"] and result["downKbps"] > 600
    text = describe(result, "vi")
    assert text.startswith("Điểm cầu ttyt-muong-te-cc (Khoa Cấp cứu): Video SD 360p và âm thanh")
    assert "UDP trực tiếp: được" in text and "TURN qua TLS: chưa cài đặt" in text and "tải lên ≥ " in text
    assert "HD video" not in describe(result, "en") and "SD video (360p)" in describe(result, "en")

    # the same point again at once: refused by the server's rate limit, exit 77, a clear message
    again = hoichan("--server", server.url, "--point", "ttyt-muong-te-cc", "--local-address", "127.0.0.1",
                    env=signed_in)
    assert again.returncode == EXIT_REFUSED and "rate-limited" in again.stderr


def test_sign_in_problems_and_refusals(server: Server) -> None:
    assert hoichan("--server", server.url, "--point", "x").returncode == EXIT_USAGE  # no token, no username
    wrong = hoichan("--server", server.url, "--point", "ttyt-muong-te-hc1", "--username", "ktv.lan",
                    "--password-stdin", stdin="not-the-password\n")
    assert wrong.returncode == EXIT_REFUSED and "sign-in refused" in wrong.stderr
    foreign = hoichan("--server", server.url, "--point", "bv-bach-mai-hc1", "--username", "ktv.lan",
                      "--password-stdin", stdin=PASSWORD + "\n")
    assert foreign.returncode == EXIT_REFUSED and "forbidden" in foreign.stderr
    unreachable = hoichan("--server", "http://127.0.0.1:9", "--point", "ttyt-muong-te-hc1", "--token", "x")
    assert unreachable.returncode == 69
