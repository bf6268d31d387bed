"""Dispatch across signaling processes: a consult rings from the process it was requested on (its owner: timers,
waves, the consult log), and the others reach it through Redis pub/sub.

- A doctor's accept, decline, cancel or invite that reaches another process is forwarded to the owner
  (``forward``): a request on the owner's channel, the answer on the asker's. The owner settles the consult in
  Redis (``decisions.py``), so exactly one of two accepts racing on two processes wins.
- News every process needs goes to every process (``announce``): a doctor reachable (came online or on duty) or
  off duty, so consults owned elsewhere ring or stop ringing them; each consult's latest view, so consult rooms
  admit its parties and lobby pages see it on whichever process they connect to; room events of a consult (joined,
  left), which its owner writes to its log.

Pub/sub, not lists: a request to a process that died reaches nobody, which ``PUBLISH`` says at once (0 receivers).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from signaling.dispatch import DispatchError

from .bus import subscribe_forever
from .keys import Keys

logger = logging.getLogger(__name__)


Serve = Callable[[str, dict[str, Any]], Awaitable[Any]]
"""Run a forwarded request (method, params) on the owner; raises ``DispatchError``."""
Hear = Callable[[dict[str, Any]], Awaitable[None]]
"""Handle an announcement from another process."""


def degraded(exc: BaseException) -> DispatchError:
    return DispatchError("service-degraded", f"service degraded: Redis unreachable ({exc}); try again shortly")


class DispatchLink:
    def __init__(self, redis: Redis, keys: Keys, process_id: str, timeout: float) -> None:
        self._redis = redis
        self._keys = keys
        self.process_id = process_id
        self._timeout = timeout
        self._ids = itertools.count()
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._serve: Serve | None = None
        self._hear: Hear | None = None
        self._reader: asyncio.Task[None] | None = None

    def _channel(self, process_id: str) -> str:
        return f"{self._keys.dispatch_channel}:{process_id}"

    async def start(self, serve: Serve, hear: Hear) -> None:
        self._serve, self._hear = serve, hear
        self._reader = asyncio.ensure_future(self._listen_forever())

    # -- owners -----------------------------------------------------------------------------------------------

    async def own(self, consult_id: str, seconds: float) -> None:
        await self._redis.set(self._keys.consult_owner(consult_id), self.process_id, ex=int(seconds))

    async def forward(self, consult_id: str, method: str, params: dict[str, Any]) -> Any:
        """Run ``method`` on the process that owns ``consult_id``; ``DispatchError`` as it raised it there."""
        try:
            owner = await self._redis.get(self._keys.consult_owner(consult_id))
            if owner is None:
                raise DispatchError("not-found", "no such consult (or it ended long ago)")
            request_id = next(self._ids)
            future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            self._pending[request_id] = future
            request = {"request": request_id, "reply_to": self.process_id, "method": method, "params": params}
            try:
                if not await self._redis.publish(self._channel(owner.decode()), json.dumps(request)):
                    raise DispatchError("consult-lost", "the server handling this consult stopped; the caller "
                                        "may request it again")  # fmt: skip
                return await asyncio.wait_for(future, self._timeout)
            finally:
                self._pending.pop(request_id, None)
        except RedisError as exc:
            raise degraded(exc) from None
        except TimeoutError:
            raise DispatchError("dispatch-timeout", f"no answer about this consult within {self._timeout:g} s") \
                from None

    async def announce(self, message: dict[str, Any]) -> None:
        """Tell every other process (lost, and logged, while Redis is unreachable)."""
        try:
            await self._redis.publish(self._keys.dispatch_channel,
                                      json.dumps({**message, "from": self.process_id}))
        except RedisError as exc:
            logger.error("dispatch news not shared: Redis unreachable (%s)", exc)

    # -- listening --------------------------------------------------------------------------------------------

    async def _listen_forever(self) -> None:
        async def receive(data: bytes) -> None:
            self._receive(data)

        await subscribe_forever(self._redis, [self._keys.dispatch_channel, self._channel(self.process_id)], receive,
                                "dispatch link")

    def _receive(self, data: bytes) -> None:
        try:
            message = json.loads(data)
        except ValueError:
            logger.error("dispatch link: dropped a message that is not JSON")
            return
        if not isinstance(message, dict) or message.get("from") == self.process_id:
            return
        if "reply" in message:
            future = self._pending.pop(message["reply"], None)
            if future is not None and not future.done():
                if "error" in message:
                    future.set_exception(DispatchError(message["error"]["code"], message["error"]["message"]))
                else:
                    future.set_result(message.get("result"))
        elif "request" in message:
            asyncio.ensure_future(self._answer(message))
        elif self._hear is not None:
            asyncio.ensure_future(self._heard(message))

    async def _heard(self, message: dict[str, Any]) -> None:
        assert self._hear is not None
        try:
            await self._hear(message)
        except Exception:
            logger.exception("dispatch link: news %s could not be handled", message.get("kind"))

    async def _answer(self, request: dict[str, Any]) -> None:
        assert self._serve is not None
        reply: dict[str, Any] = {"reply": request["request"]}
        try:
            reply["result"] = await self._serve(str(request.get("method")), request.get("params") or {})
        except DispatchError as exc:
            reply["error"] = {"code": exc.code, "message": exc.message}
        except Exception as exc:
            logger.exception("dispatch link: forwarded %s failed", request.get("method"))
            reply["error"] = {"code": "internal", "message": str(exc)}
        try:
            await self._redis.publish(self._channel(str(request.get("reply_to"))), json.dumps(reply))
        except RedisError as exc:
            logger.error("dispatch link: answer not sent: Redis unreachable (%s)", exc)

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        for future in self._pending.values():
            if not future.done():
                future.set_exception(DispatchError("internal", "signaling is shutting down"))
