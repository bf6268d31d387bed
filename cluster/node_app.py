"""The web side of a media node process (``hoichan serve --role media``): only /healthz and /metrics."""

from __future__ import annotations

from aiohttp import web

from signaling import __version__
from signaling.app import media_service, add_cluster_gauges, build_authenticator
from signaling.auth import AUTHENTICATOR, public
from signaling.config import Config
from signaling.metrics import AppMetrics, LinkStats
from signaling.metrics import add_route as add_metrics_route

from .runtime import ClusterRuntime

RUNTIME: web.AppKey[ClusterRuntime] = web.AppKey("cluster", ClusterRuntime)


@public
async def healthz(request: web.Request) -> web.Response:
    node = request.app[RUNTIME].node
    assert node is not None
    return web.json_response({"status": "ok", "version": __version__, "role": "media",
                              "registered": node.registered.is_set(), **node.stats()})


def create_node_app(config: Config) -> web.Application:
    """Raises ``ConfigError`` for an unusable token key (admins may read /metrics with a sign-in token)."""
    app = web.Application()
    app[AUTHENTICATOR] = build_authenticator(config)
    links = LinkStats()
    runtime = app[RUNTIME] = ClusterRuntime(config, None, lambda notify: media_service(config, notify), links.observe)
    metrics = AppMetrics()
    add_cluster_gauges(metrics, runtime, links)

    async def start(app: web.Application) -> None:
        await runtime.start()

    async def close(app: web.Application) -> None:
        await runtime.close()

    app.on_startup.append(start)
    app.on_shutdown.append(close)
    app.router.add_get("/healthz", healthz)
    add_metrics_route(app, config, metrics)
    return app
