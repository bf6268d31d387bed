"""``hoichan linktest --server URL --point ID``: a connection point's link test from a headless machine.

The same test as the point's page, run with aiortc: progress on a terminal, the verdict in words, or ``--json``
for a monitoring system, and an exit code by verdict (``EXIT_CODES``). It signs in with ``--token`` /
``HOICHAN_TOKEN``, or ``--username`` / ``HOICHAN_USERNAME`` with the password from ``HOICHAN_PASSWORD``,
``--password-stdin`` or a prompt. The server measures and stores the result; this command only answers its probes.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import sys
from typing import Any

__all__ = ["EXIT_CODES", "add_parser", "run"]

EXIT_CODES = {"720p": 0, "360p": 1, "180p": 2, "audio": 3, "none": 4, "unknown": 5}
"""By tier; a test that did not finish (partial, rejected) exits 5 whatever it measured."""
EXIT_USAGE, EXIT_UNAVAILABLE, EXIT_REFUSED = 64, 69, 77

_PHASES = {
    "connect": ("kết nối", "connecting"),
    "ping": ("đo độ trễ", "measuring delay"),
    "down": ("đo tải xuống", "measuring download"),
    "up": ("đo tải lên", "measuring upload"),
}
_ORDER = ("connect", "ping", "down", "up")


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cmd = commands.add_parser("linktest", help="test a connection point's link to a Hoichan server")
    cmd.add_argument("--server", required=True, help="the server's URL, e.g. https://hoichan.example.org")
    cmd.add_argument("--point", required=True, help="connection point id (from the directory)")
    cmd.add_argument("--json", action="store_true", help="print the stored result as JSON (for monitoring)")
    cmd.add_argument("--token", default=None, help="sign-in token (default: $HOICHAN_TOKEN)")
    cmd.add_argument("--username", default=None, help="sign in with this account (default: $HOICHAN_USERNAME)")
    cmd.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    cmd.add_argument("--lang", choices=("vi", "en"), default="vi", help="language of the verdict (default vi)")
    cmd.add_argument("--local-address", action="append", default=[],
                     help="test from this local address only (repeatable; e.g. the 4G or the ADSL interface)")
    cmd.add_argument("--insecure", action="store_true", help="do not verify the server's TLS certificate")
    cmd.add_argument("--timeout", type=float, default=120, help="seconds to wait for the verdict (default 120)")


def run(args: argparse.Namespace) -> int:
    token = args.token or os.environ.get("HOICHAN_TOKEN")
    username = args.username or os.environ.get("HOICHAN_USERNAME")
    password: str | None = None
    if token is None:
        if username is None:
            print("sign in: give --token (or HOICHAN_TOKEN) or --username (or HOICHAN_USERNAME)", file=sys.stderr)
            return EXIT_USAGE
        if args.password_stdin:
            password = sys.stdin.readline().rstrip("\n")
        else:
            password = os.environ.get("HOICHAN_PASSWORD") or getpass.getpass(f"Mật khẩu / password ({username}): ")
    return asyncio.run(_run(args, token, username, password))


async def _run(args: argparse.Namespace, token: str | None, username: str | None, password: str | None) -> int:
    import aiohttp  # here: `hoichan serve` and `hoichan user` need none of the client stack

    from client.linktest import LinkTestError, LinkTestSession
    from media import hooks

    if args.local_address:
        hooks.restrict_host_addresses(args.local_address)
    url = args.server.rstrip("/")
    if token is None:
        try:
            async with aiohttp.ClientSession() as http:
                async with http.post(url + "/api/login", json={"username": username, "password": password},
                                     ssl=False if args.insecure else None) as response:
                    answer = await response.json(content_type=None)
        except (aiohttp.ClientError, ValueError) as exc:
            print(f"cannot reach {url}: {exc}", file=sys.stderr)
            return EXIT_UNAVAILABLE
        if response.status != 200:
            print(f"sign-in refused: {answer.get('error', {}).get('message', response.status)}", file=sys.stderr)
            return EXIT_REFUSED
        token = answer["token"]
    progress = _Progress(args.lang) if sys.stderr.isatty() else None
    session = LinkTestSession(url, args.point, token, on_progress=progress.show if progress else None,
                              ssl_verify=not args.insecure)
    try:
        result = await session.run(args.timeout)
    except LinkTestError as exc:
        if progress:
            progress.clear()
        print(f"{exc.code}: {exc.message}", file=sys.stderr)
        return EXIT_UNAVAILABLE if exc.code in ("unavailable", "internal") else EXIT_REFUSED
    except TimeoutError:
        print("no verdict in time", file=sys.stderr)
        return EXIT_UNAVAILABLE
    if progress:
        progress.clear()
    print(json.dumps(result, ensure_ascii=False, indent=2) if args.json else describe(result, args.lang))
    if result["status"] != "complete":
        return EXIT_CODES["unknown"]
    return EXIT_CODES[result["verdict"]["tier"]]


class _Progress:
    """One line on the terminal: a bar over the four phases."""

    def __init__(self, lang: str) -> None:
        self._index = 0 if lang == "vi" else 1

    def show(self, event: dict[str, Any]) -> None:
        phase = event.get("phase", "connect")
        done = (_ORDER.index(phase) + min(max(float(event.get("progress", 0)), 0.0), 1.0)) / len(_ORDER)
        filled = int(done * 30)
        label = _PHASES.get(phase, (phase, phase))[self._index]
        sys.stderr.write(f"\r[{'#' * filled}{'.' * (30 - filled)}] {done * 100:3.0f}% {label:<24}")
        sys.stderr.flush()

    def clear(self) -> None:
        sys.stderr.write("\r" + " " * 64 + "\r")
        sys.stderr.flush()


def describe(result: dict[str, Any], lang: str) -> str:
    """The result for a person: what the link carries, the figures, what to fix."""
    verdict = result["verdict"]
    vi = lang == "vi"
    lines = [f"{'Điểm cầu' if vi else 'Connection point'} {result['pointId']} ({result['pointLabel']}): "
             f"{verdict['carries'][lang]}"]
    for path in result["paths"]:
        state = {"ok": "OK" if not vi else "được", "not-configured": "chưa cài đặt" if vi else "not set up",
                 "not-supported": "máy chủ chưa hỗ trợ" if vi else "not supported by the server"}.get(
            path["status"], "bị chặn" if vi else "blocked")
        took = f" ({path['connectMs']:.0f} ms)" if path.get("connectMs") is not None else ""
        lines.append(f"  {path['name'][lang]}: {state}{took}")

    def figure(value: Any, unit: str, scale: float = 1.0, at_least: bool = False) -> str:
        if value is None:
            return "—"
        return f"{'≥ ' if at_least else ''}{value * scale:.{1 if scale != 1 else 0}f} {unit}"

    lines.append(f"  RTT {figure(result['rttMs'], 'ms')}, jitter {figure(result['jitterMs'], 'ms')}, "
                 f"{'mất gói' if vi else 'loss'} {figure(result['loss'], '%', 100)}")
    lines.append(f"  {'tải xuống' if vi else 'download'} {figure(result['downKbps'], 'kbit/s', at_least=result['downAtLeast'])}, "
                 f"{'tải lên' if vi else 'upload'} {figure(result['upKbps'], 'kbit/s', at_least=result['upAtLeast'])}")
    for reason in verdict["reasons"]:
        lines.append(f"  - {reason[lang]}")
    return "\n".join(lines)
