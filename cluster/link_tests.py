"""Link-test history in Redis (cluster mode), behind ``LinkTestRecords``: a test run through one signaling process
is in the point's history, dashboard and rate limit on every process.

Each result is one string (its whole JSON, as the embedded store keeps it) and one member of its point's sorted
set scored by its start time, written together in one MULTI/EXEC.
"""

from __future__ import annotations

import json
from typing import Any

from redis import Redis

from signaling.linktests.history import brief

from .keys import Keys

__all__ = ["RedisLinkTestHistory"]


class RedisLinkTestHistory:
    def __init__(self, redis: Redis, keys: Keys) -> None:
        self._redis = redis
        self._keys = keys

    def add(self, result: dict[str, Any]) -> None:
        """Keep one finished test (as ``service.py`` builds it)."""
        pipe = self._redis.pipeline(transaction=True)
        pipe.set(self._keys.link_test(result["id"]), json.dumps(result, ensure_ascii=False, separators=(",", ":")))
        pipe.zadd(self._keys.link_tests(result["pointId"]), {result["id"]: float(result["startedAt"])})
        pipe.execute()

    def _latest(self, point_id: str, limit: int, before: float | None = None) -> list[dict[str, Any]]:
        high = "+inf" if before is None else f"({before!r}"
        ids = self._redis.zrevrangebyscore(self._keys.link_tests(point_id), high, "-inf", start=0, num=limit)
        if not ids:
            return []
        return [json.loads(text) for text in self._redis.mget([self._keys.link_test(i) for i in ids]) if text]

    def of_point(self, point_id: str, limit: int = 50, before: float | None = None) -> list[dict[str, Any]]:
        """The point's results, newest first; ``before``: only tests started earlier (to page back)."""
        return self._latest(point_id, limit, before)

    def recent(self, point_id: str, limit: int) -> list[dict[str, Any]]:
        """The point's latest results in brief (what a dashboard row shows), newest first."""
        return [brief(result) for result in self._latest(point_id, limit)]

    def get(self, test_id: str) -> dict[str, Any] | None:
        text = self._redis.get(self._keys.link_test(test_id))
        return None if text is None else json.loads(text)

    def last_start(self, point_id: str) -> float | None:
        """When the point's latest test started (the rate limit holds across processes and restarts)."""
        latest = self._redis.zrevrange(self._keys.link_tests(point_id), 0, 0, withscores=True)
        return float(latest[0][1]) if latest else None
