"""Link-quality samples in Redis (cluster mode), behind ``signaling.link_history.SampleStore``: a room's
participants may speak through several signaling processes, each buffering its own participants' samples; all of
them end up in the room's one list, so its timeline is whole whichever process serves it."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from redis import Redis

from signaling.link_history import FIELDS

from .keys import Keys

__all__ = ["RedisSamples"]


class RedisSamples:
    def __init__(self, redis: Redis, keys: Keys) -> None:
        self._redis = redis
        self._keys = keys

    def write(self, rows: Sequence[tuple[Any, ...]]) -> None:
        """One MULTI/EXEC for the whole flush: every row, or none."""
        by_room: dict[str, list[str]] = {}
        for row in rows:
            by_room.setdefault(row[0], []).append(json.dumps(row[1:], ensure_ascii=False, separators=(",", ":")))
        pipe = self._redis.pipeline(transaction=True)
        for room_id, items in by_room.items():
            pipe.rpush(self._keys.link_samples(room_id), *items)
        pipe.execute()

    def rows(self, room_id: str) -> list[Mapping[str, Any]]:
        stored = self._redis.lrange(self._keys.link_samples(room_id), 0, -1)
        rows = [dict(zip(FIELDS, [room_id, *json.loads(item)], strict=True)) for item in stored]
        return sorted(rows, key=lambda row: (row["participant_id"], row["at"]))

    def facilities(self, room_id: str) -> set[str]:
        return {row["facility"] for row in self.rows(room_id)}
