"""The rooms' rosters in Redis: who is in each room on every signaling process, and room capacity decided there.

A room's members are a hash (participant -> public info, identity, the process speaking for it) and a sorted set of
leases. Each process renews its participants' leases every ``interval``; a process that dies stops renewing, and
its participants' seats lapse ``lease`` seconds later unless they resume on another process meanwhile (their resume
token finds the seat). Taking a seat counts only live leases and adds in one Lua script, so two joins on two
processes cannot both take the last seat. Lapsed seats are swept (one script, so exactly one process reports each).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from signaling.auth import Identity
from signaling.rooms import Participant
from signaling.roster import Gone, Member

from .keys import Keys

logger = logging.getLogger(__name__)

# KEYS: members, leases, seat. ARGV: participant, entry, limit, lease seconds, room.
_ADD = """
local time = redis.call('TIME')
local now = tonumber(time[1]) + tonumber(time[2]) / 1000000
local lease = tonumber(ARGV[4])
local ttl = math.ceil(lease)
if redis.call('ZCOUNT', KEYS[2], '(' .. now, '+inf') >= tonumber(ARGV[3]) then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], now + lease, ARGV[1])
redis.call('EXPIRE', KEYS[1], ttl)
redis.call('EXPIRE', KEYS[2], ttl)
redis.call('SET', KEYS[3], cjson.encode({room = ARGV[5], id = ARGV[1]}), 'EX', ttl)
return 1
"""

# KEYS: members, leases, seat. ARGV: participant, process. Only the process speaking for it removes a seat.
_REMOVE = """
local entry = redis.call('HGET', KEYS[1], ARGV[1])
if not entry or cjson.decode(entry).process ~= ARGV[2] then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('DEL', KEYS[3])
return 1
"""

# KEYS: members, leases, seat. ARGV: participant, process, lease seconds. A seat taken back through its resume token.
_CLAIM = """
local entry = redis.call('HGET', KEYS[1], ARGV[1])
if not entry then return false end
local time = redis.call('TIME')
local now = tonumber(time[1]) + tonumber(time[2]) / 1000000
local decoded = cjson.decode(entry)
decoded.process = ARGV[2]
entry = cjson.encode(decoded)
redis.call('HSET', KEYS[1], ARGV[1], entry)
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[3]), ARGV[1])
redis.call('EXPIRE', KEYS[3], math.ceil(tonumber(ARGV[3])))
return entry
"""

# KEYS: members, leases. ARGV: seat key prefix. Removes lapsed seats and returns their entries.
_SWEEP = """
local time = redis.call('TIME')
local now = tonumber(time[1]) + tonumber(time[2]) / 1000000
local gone = {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)) do
  local entry = redis.call('HGET', KEYS[1], id)
  redis.call('HDEL', KEYS[1], id)
  redis.call('ZREM', KEYS[2], id)
  if entry then
    redis.call('DEL', ARGV[1] .. cjson.decode(entry).token)
    table.insert(gone, entry)
  end
end
return gone
"""


def _identity(data: dict[str, Any]) -> Identity:
    return Identity(**{**data, "specialties": tuple(data.get("specialties") or ())})


class RedisRoster:
    def __init__(self, redis: Redis, keys: Keys, process_id: str, lease: float, interval: float) -> None:
        """``lease``: seconds a seat outlives its process's last renewal (how long a participant has to resume
        elsewhere); ``interval``: seconds between renewals."""
        self._redis = redis
        self._keys = keys
        self._process = process_id
        self._lease = lease
        self._ttl = math.ceil(lease)  # of the keys, in whole seconds
        self._interval = interval
        self._add = redis.register_script(_ADD)
        self._remove = redis.register_script(_REMOVE)
        self._claim = redis.register_script(_CLAIM)
        self._sweep = redis.register_script(_SWEEP)
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    def _seat_keys(self, participant: Participant) -> list[str]:
        room = participant.room_id
        return [self._keys.members(room), self._keys.leases(room), self._keys.seat(participant.resume_token)]

    def _entry(self, participant: Participant) -> str:
        return json.dumps({"public": participant.public(), "identity": asdict(participant.identity),
                           "token": participant.resume_token, "process": self._process}, separators=(",", ":"))

    async def add(self, participant: Participant, limit: int) -> bool:
        args = [participant.id, self._entry(participant), limit, self._lease, participant.room_id]
        return bool(await self._add(keys=self._seat_keys(participant), args=args))

    async def update(self, participant: Participant) -> None:
        key = self._keys.members(participant.room_id)
        if await self._redis.hexists(key, participant.id):
            await self._redis.hset(key, participant.id, self._entry(participant))

    async def remove(self, participant: Participant) -> bool:
        return bool(await self._remove(keys=self._seat_keys(participant), args=[participant.id, self._process]))

    async def members(self, room_id: str) -> list[Member]:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.time()
            pipe.hgetall(self._keys.members(room_id))
            pipe.zrange(self._keys.leases(room_id), 0, -1, withscores=True)
            (seconds, microseconds), entries, leases = await pipe.execute()
        now = seconds + microseconds / 1e6
        live = {member.decode() for member, lapses in leases if lapses > now}
        members = []
        for participant_id, raw in sorted(entries.items()):
            if participant_id.decode() in live:
                entry = json.loads(raw)
                members.append(Member(entry["public"], _identity(entry["identity"])))
        return members

    async def restore(self, resume_token: str) -> Participant | None:
        raw = await self._redis.get(self._keys.seat(resume_token))
        if raw is None:
            return None
        seat = json.loads(raw)
        room, participant_id = seat["room"], seat["id"]
        keys = [self._keys.members(room), self._keys.leases(room), self._keys.seat(resume_token)]
        entry = await self._claim(keys=keys, args=[participant_id, self._process, self._lease])
        if entry is None:
            return None
        data = json.loads(entry)
        public = data["public"]
        return Participant(id=participant_id, room_id=room, name=public["name"], facility=public["facility"],
                           identity=_identity(data["identity"]), resume_token=resume_token,
                           audio_muted=public["audioMuted"], video_off=public["videoOff"],
                           facility_name=public.get("facilityName", ""), point=public.get("point"),
                           audio_only=public.get("audioOnlySelf", False), limits=public.get("limits") or {})

    async def start(self, local: Callable[[], list[Participant]], gone: Gone) -> None:
        self._task = asyncio.ensure_future(self._renew_forever(local, gone))

    async def _renew_forever(self, local: Callable[[], list[Participant]], gone: Gone) -> None:
        failing = False
        while not self._stopping.is_set():
            try:
                await self._renew(local(), gone)
                failing = False
            except (RedisError, OSError) as exc:
                if not failing:
                    logger.error("room seats not renewed: Redis unreachable (%s)", exc)
                failing = True
            except Exception:
                logger.exception("renewing room seats failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._interval)

    async def _renew(self, participants: list[Participant], gone: Gone) -> None:
        """Renew this process's seats, then sweep the lapsed seats of the rooms it has participants in."""
        rooms = sorted({p.room_id for p in participants})
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.time()
            for participant in participants:
                pipe.expire(self._keys.seat(participant.resume_token), self._ttl)
            for room in rooms:
                pipe.expire(self._keys.members(room), self._ttl)
                pipe.expire(self._keys.leases(room), self._ttl)
            replies = await pipe.execute()
        seconds, microseconds = replies[0]
        lapses = seconds + microseconds / 1e6 + self._lease
        async with self._redis.pipeline(transaction=False) as pipe:
            for participant in participants:
                pipe.zadd(self._keys.leases(participant.room_id), {participant.id: lapses}, xx=True)
            await pipe.execute()
        for room in rooms:
            swept = await self._sweep(keys=[self._keys.members(room), self._keys.leases(room)],
                                      args=[self._keys.seat("")])
            for raw in swept:
                entry = json.loads(raw)
                await gone(room, Member(entry["public"], _identity(entry["identity"])))

    async def close(self) -> None:
        """Stop renewing between two rounds, not in the middle of one: a Redis command cancelled half-way can leave
        its pooled connection out of step with the server, and the next command on it waiting for ever."""
        if self._task is not None:
            self._stopping.set()
            try:
                await asyncio.wait_for(asyncio.shield(self._task), self._interval + 5)
            except TimeoutError:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
