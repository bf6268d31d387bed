"""Connection points' caps in Redis (cluster mode): set through one signaling process, in force on all of them.

The store (``RedisCaps``, behind the same methods as ``signaling/caps/store.py``) keeps each point's caps as one
JSON string. A change is announced on ``caps_channel`` (``CapsChannel``): every signaling process then applies the
point's caps to its own participants at that point. A change announced while a process could not listen (Redis
unreachable) reaches its participants at their next join.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

from redis import Redis
from redis.asyncio import Redis as AsyncRedis

from .bus import subscribe_forever
from .keys import Keys

__all__ = ["CapsChannel", "RedisCaps"]


class RedisCaps:
    def __init__(self, redis: Redis, keys: Keys) -> None:
        self._redis = redis
        self._keys = keys

    def get(self, point_id: str) -> dict[str, Any] | None:
        text = self._redis.get(self._keys.point_caps(point_id))
        return None if text is None else json.loads(text)

    def put(self, point_id: str, uplink_kbps: int | None, downlink_kbps: int | None, audio_only: bool,
            set_by: str) -> dict[str, Any]:
        caps = {"uplinkKbps": uplink_kbps, "downlinkKbps": downlink_kbps, "audioOnly": audio_only,
                "setBy": set_by, "setAt": time.time()}
        self._redis.set(self._keys.point_caps(point_id), json.dumps(caps, separators=(",", ":")))
        return caps

    def delete(self, point_id: str) -> bool:
        return bool(self._redis.delete(self._keys.point_caps(point_id)))


class CapsChannel:
    """Announces changed points to every signaling process, and hears the others' announcements."""

    def __init__(self, redis: AsyncRedis, keys: Keys) -> None:
        self._redis = redis
        self._keys = keys
        self._task: asyncio.Task[None] | None = None

    async def announce(self, point_id: str) -> None:
        await self._redis.publish(self._keys.caps_channel, point_id)

    def start(self, changed: Callable[[str], Awaitable[None]]) -> None:
        self._task = asyncio.ensure_future(self._listen_forever(changed))

    async def _listen_forever(self, changed: Callable[[str], Awaitable[None]]) -> None:
        async def receive(data: bytes) -> None:
            await changed(data.decode() if isinstance(data, bytes) else str(data))

        await subscribe_forever(self._redis, [self._keys.caps_channel], receive, "caps channel")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
