"""How a consult ends, decided in Redis: the first settlement written with ``SET NX`` wins, on any process.

Two central doctors on two signaling processes accepting one call at the same moment (or an accept against the
caller's cancel, or the last wave's timeout) race to set one key; exactly one succeeds and the others read who did.
"""

from __future__ import annotations

import json

from redis.asyncio import Redis

from signaling.dispatch import Settlement

from .keys import Keys

KEEP_SECONDS = 24 * 3600  # a settlement outlives every process's memory of its consult


class RedisDecisions:
    def __init__(self, redis: Redis, keys: Keys) -> None:
        self._redis = redis
        self._keys = keys

    async def settle(self, consult_id: str, settlement: Settlement) -> tuple[Settlement, bool]:
        key = self._keys.settled(consult_id)
        value = json.dumps({"outcome": settlement.outcome, "by": settlement.by})
        if await self._redis.set(key, value, nx=True, ex=KEEP_SECONDS):
            return settlement, True
        current = json.loads(await self._redis.get(key) or value)
        return Settlement(current["outcome"], current["by"]), False

    def forget(self, consult_id: str) -> None:
        pass  # the key expires by itself; deleting it would let a late click settle the consult again
