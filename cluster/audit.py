"""The recordings audit log in Redis (cluster mode), behind ``signaling.recordings.audit.AuditStore``: an access
through any signaling process is listed and exported by every one.

Entries are the embedded log's JSON objects, appended to one list (and, in the same MULTI/EXEC, to their
recording's own list, so one recording's entries are read without scanning the whole log). With
``appendfsync always`` an entry is on disk before the access goes ahead, as the embedded log's fsync makes it;
with ``everysec`` a Redis crash can lose the last second (docs/cluster.md).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from redis import Redis

from .keys import Keys

__all__ = ["RedisAudit"]

_PAGE = 1000


class RedisAudit:
    def __init__(self, redis: Redis, keys: Keys) -> None:
        self._redis = redis
        self._keys = keys

    def _list(self, recording: str | None) -> str:
        return self._keys.audit if recording is None else self._keys.audit_of(recording)

    def append(self, entry: dict[str, Any]) -> None:
        line = json.dumps(entry, ensure_ascii=False)
        pipe = self._redis.pipeline(transaction=True)
        pipe.rpush(self._keys.audit, line)
        if entry.get("recording"):
            pipe.rpush(self._keys.audit_of(entry["recording"]), line)
        pipe.execute()

    def entries(self, recording: str | None = None) -> Iterator[dict[str, Any]]:
        """Every entry, oldest first, read a page at a time (an export of a long log stays small in memory)."""
        key, start = self._list(recording), 0
        while page := self._redis.lrange(key, start, start + _PAGE - 1):
            yield from (json.loads(line) for line in page)
            start += len(page)

    def latest(self, limit: int, recording: str | None = None) -> list[dict[str, Any]]:
        if limit <= 0:
            return []
        return [json.loads(line) for line in reversed(self._redis.lrange(self._list(recording), -limit, -1))]
