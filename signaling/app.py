"""The aiohttp application: static pages, REST API, socket.io endpoint, lobby and dispatch, and the media relay.

Every route is declared ``public`` or guarded with ``require(*roles)`` (``auth.py``); tests fail on one that is neither.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import socketio
from aiohttp import web
from aiortc import RTCIceServer
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import OutOfMemoryError as RedisOutOfMemoryError
from redis.exceptions import TimeoutError as RedisTimeoutError

from cluster.load import CpuMeter
from cluster.decisions import RedisDecisions
from cluster.dispatch_link import DispatchLink
from cluster.point_caps import CapsChannel
from cluster.presence import RedisPresence
from cluster.roster import RedisRoster
from cluster.runtime import ClusterRuntime
from media.recording.manifest import recover_unfinished
from media.router import Notify
from media.service import LocalMediaService, MediaService
from media.settings import MediaSettings
from media.workers import WorkerPool

from . import __version__, consults_api, directory_api
from .accounts import open_accounts
from .auth import AUTHENTICATOR, TokenAuthenticator, error_response, identity_of, public, require
from .config import Config, ConfigError
from .dispatch import Decisions, Dispatcher
from .directory import Directory, DirectoryError, DirectorySource, account_problems
from .events import SignalingEvents, account_room
from .rooms import RoomRegistry
from .roster import LocalRoster, Roster
from .lobby_events import LobbyEvents
from .login import THROTTLE, LoginThrottle, add_routes
from .metrics import AppMetrics, LinkStats, add_media_gauges
from .metrics import add_route as add_metrics_route
from .presence import Presence
from .records import open_records
from .recordings import api as recordings
from . import link_history_api, points_api
from .caps import api as caps_api
from .caps.service import SiteLimits
from .link_history import LinkHistory
from .linktests import api as linktests_api
from .linktests.service import LinkTests
from .schedules import api as schedules_api
from .schedules.scheduler import Scheduler
from .sharing import api as sharing_api
from .sharing.files import SharedFiles
from .sharing.service import Sharing
from .store import connect
from .tokens import TokenIssuer, load_secret

logger = logging.getLogger(__name__)

WEB_ROOT = Path(__file__).resolve().parent.parent / "web"
EVENTS: web.AppKey[SignalingEvents] = web.AppKey("events", SignalingEvents)
MEDIA: web.AppKey[MediaService] = web.AppKey("media", MediaService)  # type: ignore[type-abstract]
ROOM_ROUTE = "{room_id:[A-Za-z0-9_-]{1,64}}"


def _ice_servers(config: Config) -> list[dict[str, Any]]:
    return [server.as_rtc_dict() for server in config.media.ice_servers]


def media_service(config: Config, notify: Notify) -> MediaService:
    """Media in worker processes (one per core by default), or in this process when ``media.workers`` is 0."""
    media = config.media
    settings = MediaSettings(simulcast=media.simulcast, downlink_start_kbps=media.downlink_start_kbps)
    ports = (media.udp_port_min, media.udp_port_max) if media.udp_port_min and media.udp_port_max else None
    workers = len(os.sched_getaffinity(0)) if media.workers == "auto" else int(media.workers)
    if workers == 0:
        return LocalMediaService(
            ice_servers=[RTCIceServer(**s) for s in _ice_servers(config)],
            notify=notify,
            host_addresses=list(media.ice_addresses),
            udp_ports=ports,
            recordings=config.recording.directory,
            settings=settings,
        )
    return WorkerPool(
        workers,
        notify,
        ice_servers=_ice_servers(config),
        host_addresses=list(media.ice_addresses),
        udp_ports=ports,
        pin=media.pin_workers,
        recordings=config.recording.directory,
        log_level=config.logging.level,
        settings=settings,
    )


def socket_manager(config: Config) -> socketio.AsyncManager:
    """Clustered: socket.io's Redis manager, so an emit to a socket.io room reaches its sockets on every process."""
    if not config.cluster.enabled:
        return socketio.AsyncManager()
    assert config.cluster.redis_url is not None
    return socketio.AsyncRedisManager(config.cluster.redis_url, channel=f"{config.cluster.key_prefix}socketio",
                                      redis_options={"socket_connect_timeout": 1.0, "socket_timeout": 2.0})


def media_pids(stats: dict[str, Any]) -> list[int]:
    """This process and its media workers: where media's CPU goes."""
    return [os.getpid(), *(worker["pid"] for worker in stats.get("workers", []))]


def add_cluster_gauges(metrics: AppMetrics, cluster: ClusterRuntime, links: LinkStats) -> None:
    """A clustered process: its media node's gauges (role all) and what its signaling sees of the cluster."""
    if cluster.node is not None:
        node, cpu = cluster.node, CpuMeter()
        add_media_gauges(metrics, node.stats, links, lambda: cpu.sample(media_pids(node.stats())))
    if cluster.service is not None:
        service = cluster.service
        metrics.gauge("hoichan_cluster_media_nodes_alive", "Media nodes with a live heartbeat, as last seen",
                      lambda: float(service.nodes_alive))
        metrics.gauge("hoichan_cluster_redis_up", "1 while Redis answers this process, else 0",
                      lambda: float(service.stats()["redis"]))


@web.middleware
async def redis_degraded(request: web.Request, handler: Any) -> web.StreamResponse:
    """A cluster's records live in Redis: a request that needs them while Redis cannot be reached (or, full under
    ``noeviction``, refuses writes) gets the same ``service-degraded`` as a new call, within the clients'
    timeouts, and changes nothing."""
    try:
        return await handler(request)
    except (RedisConnectionError, RedisTimeoutError) as exc:
        return error_response(503, "service-degraded", f"service degraded: Redis unreachable ({exc}); try again "
                              "shortly")
    except RedisOutOfMemoryError as exc:
        return error_response(503, "service-degraded", f"service degraded: Redis is full and refuses writes ({exc})")


@web.middleware
async def security_headers(request: web.Request, handler: Any) -> web.StreamResponse:
    response = await handler(request)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    response.headers.setdefault("X-Frame-Options", "DENY")
    return response


def build_authenticator(config: Config, directory: Directory | None = None) -> TokenAuthenticator:
    """Accounts (with the accounts file merged in), the token key and the guest policy of this configuration.

    With ``directory``, an accounts file naming a facility or specialty it does not list is refused.
    """
    tokens = TokenIssuer(load_secret(config), datetime.timedelta(minutes=config.auth.token_ttl_minutes))
    vet = (lambda account: account_problems(directory, [account])) if directory is not None else None
    return TokenAuthenticator(tokens, open_accounts(config, vet), allow_guests=config.auth.allow_guests)


def open_directory(config: Config) -> DirectorySource:
    """The directory in force at start; a file that fails its checks stops the start (``ConfigError``)."""
    try:
        return DirectorySource(config.directory.file)
    except DirectoryError as exc:
        raise ConfigError("directory.file", str(exc)) from None


@public
async def healthz(request: web.Request) -> web.Response:
    stats = request.app[MEDIA].stats()
    return web.json_response({"status": "ok", "version": __version__, **stats})


def _facility_scope(request: web.Request) -> str | None:
    """Admins see every room; a technician only rooms where someone of their own facility takes part."""
    identity = identity_of(request)
    return None if identity.role == "admin" else identity.facility_id


@require("admin", "technician")
async def list_rooms(request: web.Request) -> web.Response:
    return web.json_response({"rooms": request.app[EVENTS].room_summary(facility_id=_facility_scope(request))})


@require("admin", "technician")
async def get_room(request: web.Request) -> web.Response:
    rooms = request.app[EVENTS].room_summary(request.match_info["room_id"], facility_id=_facility_scope(request))
    if not rooms:  # out of scope looks the same as absent: a technician learns nothing about other facilities
        return error_response(404, "not-found", "unknown room")
    return web.json_response(rooms[0])


@public
async def landing_page(request: web.Request) -> web.FileResponse:
    return web.FileResponse(WEB_ROOT / "index.html")


@public
async def room_page(request: web.Request) -> web.FileResponse:
    """Public like every page: the page itself asks for a sign-in, the server enforces it on connect."""
    return web.FileResponse(WEB_ROOT / "room.html")


@public
async def login_page(request: web.Request) -> web.FileResponse:
    return web.FileResponse(WEB_ROOT / "login.html")


@public
async def lobby_page(request: web.Request) -> web.FileResponse:
    """Call a specialist (district side) or answer calls (central side); the page asks for a sign-in."""
    return web.FileResponse(WEB_ROOT / "lobby.html")


@public
async def consults_page(request: web.Request) -> web.FileResponse:
    """The consult log, and statistics for admins."""
    return web.FileResponse(WEB_ROOT / "consults.html")


@public
async def points_page(request: web.Request) -> web.FileResponse:
    """The technician's dashboard of connection points; ``GET /api/points`` decides what it lists."""
    return web.FileResponse(WEB_ROOT / "points.html")


@public
async def point_page(request: web.Request) -> web.FileResponse:
    """One connection point: run a link test, its history; the API refuses what the account may not see."""
    return web.FileResponse(WEB_ROOT / "point.html")


def create_app(config: Config) -> web.Application:
    """Raises ``ConfigError`` for a bad directory or accounts file, or an unusable token key."""
    directory = open_directory(config)
    auth = build_authenticator(config, directory.current)
    for problem in account_problems(directory.current, auth.accounts.all()):  # made with the CLI before an edit
        logger.warning("%s", problem)
    app = web.Application(middlewares=[security_headers, redis_degraded], client_max_size=1024**2)
    app[AUTHENTICATOR] = auth
    app[directory_api.DIRECTORY] = directory
    app[THROTTLE] = LoginThrottle()
    sio = socketio.AsyncServer(
        async_mode="aiohttp",
        client_manager=socket_manager(config),
        cors_allowed_origins=[],
        max_http_buffer_size=max(config.server.max_message_bytes * 4, 1024**2),
        logger=False,
        engineio_logger=False,
    )
    sio.attach(app)

    async def notify(participant_id: str, event: str, payload: dict[str, Any]) -> None:
        if event.startswith("linktest-"):  # about a link test (its id in place of a participant's)
            await link_tests.on_media(participant_id, event, payload)
        else:
            await events.notify(participant_id, event, payload)

    async def observed(participant_id: str, event: str, payload: dict[str, Any]) -> None:
        await links.observe(participant_id, event, payload)
        await notify(participant_id, event, payload)

    metrics, links, cpu = AppMetrics(), LinkStats(), CpuMeter()
    cluster: ClusterRuntime | None = None
    media: MediaService
    if config.cluster.enabled:  # role signaling, or all with Redis: a signaling process and a media node in one
        node_media = (lambda n: media_service(config, n)) if config.cluster.role == "all" else None
        cluster = ClusterRuntime(config, notify, node_media, links.observe)
        assert cluster.service is not None
        media = cluster.service
    else:
        media = media_service(config, observed)
    roster: Callable[[RoomRegistry], Roster] = LocalRoster
    if cluster is not None:
        redis_roster = RedisRoster(cluster.redis, cluster.keys, cluster.process_id,
                                   lease=config.server.reconnect_grace_seconds + config.cluster.node_timeout,
                                   interval=config.cluster.heartbeat_interval)
        roster = lambda registry: redis_roster  # noqa: E731
    events = SignalingEvents(
        sio,
        media,
        auth,
        ice_servers=_ice_servers(config),
        max_message_bytes=config.server.max_message_bytes,
        room_max_participants=config.media.room_max_participants,
        reconnect_grace_seconds=config.server.reconnect_grace_seconds,
        recording_policy=config.recording.policy,
        roster=roster,
    )
    app[EVENTS] = events
    app[MEDIA] = media
    records = open_records(config, cluster, datetime.datetime.now(datetime.UTC))
    sharing = Sharing(
        records.shared, SharedFiles(config.sharing.directory or config.store.path / "shared"), events, config.sharing
    )
    scheduler = Scheduler(records.schedules, auth.accounts, events, config.scheduler)

    link_tests = LinkTests(events, media, records.link_tests, directory, config)
    link_history = LinkHistory(records.link_samples)
    events.link_listeners.append(link_history.add)
    events.room_closed_listeners.append(link_history.room_closed)
    metrics.gauge("hoichan_signaling_rooms", "Rooms with at least one participant on this signaling process",
                  lambda: float(len(events.registry.rooms)))
    metrics.gauge("hoichan_signaling_participants", "Participants in a room on this signaling process",
                  lambda: float(sum(len(members) for members in events.registry.rooms.values())))
    if cluster is None:
        add_media_gauges(metrics, media.stats, links, lambda: cpu.sample(media_pids(media.stats())))
    else:
        add_cluster_gauges(metrics, cluster, links)

    async def send(usernames: list[str], event: str, payload: dict[str, Any]) -> None:
        await sio.emit(event, payload, to=[account_room(name) for name in usernames])

    db = connect(config.store.path)
    presence = Presence(db)
    decisions: Decisions | None = None
    link: DispatchLink | None = None
    if cluster is not None:  # presence and the settling of consults shared in Redis; consults reached by forwarding
        presence = RedisPresence(db, cluster.redis, cluster.keys, cluster.process_id,
                                 lease=3 * config.cluster.node_timeout, interval=config.cluster.heartbeat_interval)
        decisions = RedisDecisions(cluster.redis, cluster.keys)
        link = DispatchLink(cluster.redis, cluster.keys, cluster.process_id, config.cluster.request_timeout)
    dispatcher = Dispatcher(
        lambda: directory.current,
        presence,
        records.consults,
        auth.accounts,
        send,
        config.dispatch,
        decisions,
        link,
    )
    app[consults_api.LOBBY] = LobbyEvents(events, dispatcher, lambda: directory.current)

    def facility_name(facility_id: str) -> str | None:
        facility = directory.current.facility(facility_id)
        return facility.name if facility is not None else None

    events.facility_name = facility_name

    def point_facility(point_id: str) -> str | None:
        point = directory.current.point(point_id)
        return point.facility if point is not None else None

    events.point_facility = point_facility
    site_limits = SiteLimits(events, records.caps,
                             CapsChannel(cluster.redis, cluster.keys) if cluster is not None else None)

    async def start_media(app: web.Application) -> None:
        await events.start()
        await presence.start()
        if link is not None:
            await link.start(dispatcher.serve, dispatcher.hear)
        await link_history.start()
        await records.start()
        await site_limits.start()
        if cluster is not None:
            await cluster.start()
            return
        # Before any worker writes: recordings left open by a process that died are closed honestly.
        config.recording.directory.mkdir(parents=True, exist_ok=True)
        for recording_id in recover_unfinished(config.recording.directory):
            logger.warning("recording %s was interrupted (the server stopped unexpectedly); closed as unclean",
                           recording_id)
        if isinstance(media, WorkerPool):
            await media.start()

    async def watch_directory(app: web.Application) -> AsyncIterator[None]:
        task = None
        if config.directory.reload_seconds > 0:
            task = asyncio.create_task(directory.watch(config.directory.reload_seconds))
        yield
        if task is not None:
            task.cancel()

    async def run_scheduler(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.ensure_future(scheduler.run())
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def close_media(app: web.Application) -> None:
        await sio.shutdown()  # close the websockets first: aiohttp would otherwise wait for them
        await events.close()
        await presence.close()
        if link is not None:
            await link.close()
        # Before cluster.close(), which closes the Redis client (cluster.redis) that the caps channel's subscriber
        # reads from: closed under it, the subscriber reconnects and re-subscribes, and a cancel that lands in
        # redis-py's asyncio.wait_for is dropped on Python 3.11 (the inner send is already done), so the task never
        # ends, runner.cleanup() never returns and the process ignores SIGTERM until it is killed.
        await site_limits.close()
        if cluster is not None:
            await cluster.close()
        else:
            await media.close()
        await link_history.close()
        await records.close()

    app.on_startup.append(start_media)
    app.cleanup_ctx.append(run_scheduler)
    app.on_shutdown.append(close_media)
    app.cleanup_ctx.append(watch_directory)
    app.router.add_get("/healthz", healthz)
    add_metrics_route(app, config, metrics)
    app.router.add_get("/api/rooms", list_rooms)
    app.router.add_get("/api/rooms/" + ROOM_ROUTE, get_room)
    add_routes(app)
    directory_api.add_routes(app)
    consults_api.add_routes(app)
    recordings.add_routes(app, config, records.audit, records.jobs)
    sharing_api.add_routes(app, sharing)
    link_history_api.add_routes(app, link_history)
    linktests_api.add_routes(app, link_tests)
    points_api.add_routes(app)
    caps_api.add_routes(app, site_limits)
    schedules_api.add_routes(app, scheduler)
    app.router.add_get("/", landing_page)
    app.router.add_get("/login", login_page)
    app.router.add_get("/lobby", lobby_page)
    app.router.add_get("/consults", consults_page)
    app.router.add_get("/points", points_page)
    app.router.add_get("/points/{point_id:[a-z0-9][a-z0-9_-]{0,63}}", point_page)
    app.router.add_get("/room/" + ROOM_ROUTE, room_page)
    app.router.add_static("/static/", WEB_ROOT, show_index=False, follow_symlinks=False)
    return app
