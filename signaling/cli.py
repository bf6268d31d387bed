"""The ``hoichan`` command: ``hoichan serve --config config.yaml``, ``hoichan user add|list|passwd|remove``,
``hoichan linktest --server URL --point ID``."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from ssl import SSLContext

from aiohttp import web

from media import logs

from . import cli_linktest, cli_users
from .config import Config, ConfigError, load_config
from .tls import ssl_context


async def serve(config: Config, ssl: SSLContext | None) -> None:
    # here, so that `hoichan user ...` starts without loading the media stack
    if config.cluster.role == "media":
        from cluster.node_app import create_node_app

        app = create_node_app(config)
    else:
        from .app import create_app

        app = create_app(config)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
    await runner.setup()
    site = web.TCPSite(runner, config.server.host, config.server.port, ssl_context=ssl)
    await site.start()
    url = config.base_url.rstrip("/")
    if config.cluster.role == "media":
        print(f"Hoichan media node running: {url}/metrics, {url}/healthz", flush=True)
    else:
        print(f"Hoichan đang chạy / is running: {url}/  (phòng thử / test room: {url}/room/hoi-chan-thu)", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hoichan", description="Hoichan telehealth consultation server")
    commands = parser.add_subparsers(dest="command", required=True)
    serve_cmd = commands.add_parser("serve", help="run the signaling server and media relay")
    serve_cmd.add_argument("--config", default=None, help="path to config.yaml (defaults are embedded)")
    serve_cmd.add_argument("--role", choices=("all", "signaling", "media"), default=None,
                           help="what this process runs (overrides cluster.role; signaling and media need Redis)")
    cli_users.add_parser(commands)
    cli_linktest.add_parser(commands)
    args = parser.parse_args(argv)

    if args.command == "linktest":
        return cli_linktest.run(args)
    if args.command == "user":
        try:
            return cli_users.run(args)
        except ConfigError as exc:
            print(str(exc), file=sys.stderr)
            return 2
    try:
        env = dict(os.environ) if args.role is None else {**os.environ, "HOICHAN_CLUSTER__ROLE": args.role}
        config = load_config(args.config, env)
        ssl = ssl_context(config)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    logs.setup(config.logging.level, config.logging.format, config.cluster.role)
    try:
        asyncio.run(serve(config, ssl))
    except ConfigError as exc:  # the accounts file or the token key, checked as the app is built
        print(str(exc), file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"cannot listen on {config.server.host}:{config.server.port}: {exc.strerror}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
