"""The command bus between signaling processes and media nodes: JSON messages on Redis lists.

Each media node pops its own command list (``BLPOP``); each signaling process pops its own inbox, which carries
both the replies to its requests and the notifications media raises for its participants (offers, media-failed,
recording-state, link-quality), so one node's messages to one process arrive in the order they were sent. Lists,
not pub/sub: a message survives a reconnect of its reader, and every list expires once nobody reads it. A request
carries its deadline; a node drops one that arrives too late, and the caller fails it with a clear error.

Messages: request ``{"id", "reply_to", "method", "params", "expires"}`` (expires: Unix time, seconds); reply
``{"id", "result"}`` or ``{"id", "error": {"code", "message"}}``; notification ``{"notify": [participant, event,
payload]}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from media.errors import MediaError

from .keys import Keys
from .placement import degraded

logger = logging.getLogger(__name__)

POLL = 1.0  # seconds one BLPOP waits: how soon a reader notices it is being closed
RETRY = 0.5  # seconds between attempts while Redis cannot be reached
TIMEOUT = "media-timeout"

Handler = Callable[[dict[str, Any]], Awaitable[None]]


def encode(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode()


def stop_if_cancelled() -> None:
    """End a reader whose cancel was swallowed: Python 3.11's ``asyncio.wait_for`` (inside redis-py) drops a cancel
    that lands once its inner call is done, and the task then polls on, "cancelling", while a server's shutdown
    waits for it until the process is killed."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def pop_forever(redis: Redis, key: str, handle: Handler, what: str) -> None:
    """BLPOP ``key`` until cancelled, handing each message to ``handle``; survives Redis going away and back."""
    failing = False
    while True:
        stop_if_cancelled()
        try:
            item = await redis.blpop([key], timeout=POLL)
        except (RedisError, OSError) as exc:
            if not failing:
                logger.error("%s: Redis unreachable (%s); retrying every %.1f s", what, exc, RETRY)
                failing = True
            await asyncio.sleep(RETRY)
            continue
        if failing:
            logger.warning("%s: Redis reachable again", what)
            failing = False
        if item is None:
            continue
        try:
            message = json.loads(item[1])
        except ValueError:
            logger.error("%s: dropped a message that is not JSON", what)
            continue
        if not isinstance(message, dict):
            continue
        try:
            await handle(message)
        except Exception:  # one bad message must not stop the reader
            logger.exception("%s: a message could not be handled", what)


async def subscribe_forever(redis: Redis, channels: list[str], handle: Callable[[bytes], Awaitable[None]],
                            what: str) -> None:
    """Hand every message published on ``channels`` to ``handle`` until cancelled; subscribes again after Redis
    went away (what was published meanwhile is lost: pub/sub carries news, not commands)."""
    failing = False
    while True:
        pubsub = redis.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(*channels)
            if failing:
                logger.warning("%s: Redis reachable again", what)
            failing = False
            while True:
                stop_if_cancelled()
                message = await pubsub.get_message(timeout=POLL)
                if message is not None:
                    await handle(message["data"])
        except (RedisError, OSError) as exc:
            if not failing:
                logger.error("%s: Redis unreachable (%s); retrying every %.1f s", what, exc, RETRY)
            failing = True
            stop_if_cancelled()
            await asyncio.sleep(RETRY)
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()


class Caller:
    """A signaling process's side: requests to media nodes, replies and notifications from its inbox."""

    def __init__(self, redis: Redis, blocking: Redis, keys: Keys, process_id: str, timeout: float,
                 notify: Callable[[str, str, dict[str, Any]], Awaitable[None]]) -> None:
        self._redis = redis
        self._blocking = blocking
        self._keys = keys
        self.inbox = keys.inbox(process_id)
        self._timeout = timeout
        self._notify = notify
        self._ids = itertools.count()
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._reader: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._reader = asyncio.ensure_future(pop_forever(self._blocking, self.inbox, self._receive, "signaling inbox"))

    async def _receive(self, message: dict[str, Any]) -> None:
        if "notify" in message:
            participant_id, event, payload = message["notify"]
            asyncio.ensure_future(self._notify(participant_id, event, payload))
            return
        future = self._pending.pop(message.get("id", -1), None)
        if future is None or future.done():
            return  # its caller gave up already
        if "error" in message:
            future.set_exception(MediaError(message["error"]["code"], message["error"]["message"]))
        else:
            future.set_result(message.get("result"))

    async def call(self, node_id: str, method: str, **params: Any) -> Any:
        """Send ``method`` to ``node_id`` and wait for its answer (``MediaError`` on failure or timeout)."""
        request_id = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        request = {"id": request_id, "reply_to": self.inbox, "method": method, "params": params,
                   "expires": time.time() + self._timeout}
        key = self._keys.commands(node_id)
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.rpush(key, encode(request))
                pipe.pexpire(key, int(self._timeout * 2000))  # a dead node's list does not outlive its requests
                await pipe.execute()
            return await asyncio.wait_for(future, self._timeout)
        except RedisError as exc:
            raise degraded(exc) from None
        except TimeoutError:
            raise MediaError(TIMEOUT, f"media node {node_id} did not answer {method} within "
                                      f"{self._timeout:g} s") from None
        finally:
            self._pending.pop(request_id, None)

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
        for future in self._pending.values():
            if not future.done():
                future.set_exception(MediaError("internal", "signaling is shutting down"))


class Responder:
    """A media node's side: pops its command list, runs each request, replies to the caller's inbox."""

    def __init__(self, redis: Redis, blocking: Redis, keys: Keys, node_id: str,
                 run: Callable[[str, dict[str, Any], str], Awaitable[Any]]) -> None:
        self._redis = redis
        self._blocking = blocking
        self._key = keys.commands(node_id)
        self._run = run
        self._reader: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        self._reader = asyncio.ensure_future(pop_forever(self._blocking, self._key, self._receive, "media commands"))

    async def _receive(self, request: dict[str, Any]) -> None:
        if float(request.get("expires", 0)) < time.time():
            logger.warning("dropped %s: it arrived after its caller gave up", request.get("method"))
            return
        task = asyncio.ensure_future(self._answer(request))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(self, request: dict[str, Any]) -> None:
        reply: dict[str, Any] = {"id": request.get("id")}
        try:
            reply["result"] = await self._run(str(request.get("method")), request.get("params") or {},
                                              str(request.get("reply_to")))
        except MediaError as exc:
            reply["error"] = {"code": exc.code, "message": exc.message}
        except Exception as exc:
            logger.exception("media command %s failed", request.get("method"))
            reply["error"] = {"code": "internal", "message": str(exc)}
        await self.send(str(request.get("reply_to")), reply)

    async def send(self, inbox: str, message: dict[str, Any]) -> None:
        """Push to a signaling process's inbox; lost (and logged) if Redis is unreachable."""
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.rpush(inbox, encode(message))
                pipe.expire(inbox, 60)  # a signaling process that died leaves no inbox behind for long
                await pipe.execute()
        except RedisError as exc:
            logger.error("could not send to %s: %s", inbox, exc)

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
        for task in list(self._tasks):
            task.cancel()
