"""Scheduled sessions in Redis (cluster mode), behind ``signaling.schedules.store.ScheduleRecords``: a schedule made
through any signaling process is listed by every one, and each of its occurrences is opened by exactly one of them.

Every process runs the scheduler and ticks over the same schedules; opening an occurrence is ``HSETNX`` of its
start time in the schedule's ``opened`` hash, so the first process to claim it opens the room and notifies the
parties (socket.io's Redis manager carries the notice to their pages, wherever they are connected); the others
leave it. A schedule and its place in the active list are written in one MULTI/EXEC; a deletion is one Lua script
(of two deletions, one wins).
"""

from __future__ import annotations

import datetime
import json
import time
from typing import Any

from redis import Redis

from signaling.schedules.store import Schedule, from_row, new_schedule, to_row

from .keys import Keys

__all__ = ["RedisSchedules"]

UTC = datetime.UTC

# KEYS[1] the active list, KEYS[2] the schedule; ARGV[1] its id, ARGV[2] when (Unix s).
_DELETE = """
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[2], 'deleted_at', ARGV[2])
return 1
"""


class RedisSchedules:
    def __init__(self, redis: Redis, keys: Keys) -> None:
        self._redis = redis
        self._keys = keys
        self._delete = redis.register_script(_DELETE)

    def add(self, **fields: Any) -> Schedule:
        schedule = new_schedule(**fields)
        pipe = self._redis.pipeline(transaction=True)
        pipe.hset(self._keys.schedule(schedule.id), "row", json.dumps(to_row(schedule), ensure_ascii=False))
        pipe.zadd(self._keys.schedules, {schedule.id: schedule.created_at})
        pipe.execute()
        return schedule

    def get(self, schedule_id: str) -> Schedule | None:
        stored = self._redis.hgetall(self._keys.schedule(schedule_id))
        return None if "row" not in stored else _schedule(stored)

    def active(self) -> list[Schedule]:
        ids = self._redis.zrange(self._keys.schedules, 0, -1)
        pipe = self._redis.pipeline(transaction=False)
        for schedule_id in ids:
            pipe.hgetall(self._keys.schedule(schedule_id))
        return [_schedule(stored) for stored in pipe.execute() if "row" in stored]

    def delete(self, schedule_id: str) -> bool:
        keys = [self._keys.schedules, self._keys.schedule(schedule_id)]
        return bool(self._delete(keys=keys, args=[schedule_id, time.time()]))

    def claim(self, schedule: Schedule, starts_at: datetime.datetime) -> bool:
        opened = json.dumps({"room": schedule.room_for(starts_at), "openedAt": time.time()})
        return bool(self._redis.hsetnx(self._keys.schedule_opened(schedule.id),
                                       starts_at.astimezone(UTC).isoformat(), opened))

    def opened(self, schedule_id: str) -> list[dict[str, Any]]:
        stored = self._redis.hgetall(self._keys.schedule_opened(schedule_id))
        return [{"startsAt": starts_at, **json.loads(stored[starts_at])} for starts_at in sorted(stored)]


def _schedule(stored: dict[str, str]) -> Schedule:
    deleted_at = stored.get("deleted_at")
    return from_row({**json.loads(stored["row"]), "deleted_at": None if deleted_at is None else float(deleted_at)})
