"""Room placement and node liveness, decided atomically in Redis by Lua scripts (no consensus of our own).

A room's placement key names its media node. Placing a room keeps a placement whose node is alive, and otherwise
(new room, or its node's liveness key expired) picks the least-loaded live node and writes it, in one script, so
every signaling process that asks at the same moment gets the same answer. Media nodes renew their liveness key and
re-assert their rooms' placements on every heartbeat, which is also how they re-register after Redis restarts.
"""

from __future__ import annotations

import os
import socket
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from media.errors import MediaError

from .keys import Keys

DEGRADED = "service-degraded"

# A node's load: participants it reported, plus one for each room placed on it that it has not reported yet (its
# first participant is on the way), then its rooms, then CPU %, then the id (deterministic among equals).
# node:<id>:rooms is a sorted set of the node's rooms scored by when they were last placed or re-asserted, so rooms
# placed between two heartbeats count at once, and a placement that never led to a join drops out after PENDING.
PENDING = 10  # seconds

_PLACE = """
local prefix, room_ttl, room = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local now = tonumber(redis.call('TIME')[1])
local function alive(id) return redis.call('EXISTS', prefix .. 'node:' .. id .. ':alive') == 1 end
local current = redis.call('GET', KEYS[1])
if current and alive(current) then return {current, 0} end
local best, best_load = nil, nil
for _, id in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  if alive(id) then
    local l = redis.call('HMGET', prefix .. 'node:' .. id, 'participants', 'rooms', 'cpu')
    local placed = redis.call('ZCARD', prefix .. 'node:' .. id .. ':rooms')
    local participants, rooms = tonumber(l[1]) or 0, tonumber(l[2]) or 0
    local load = {participants + math.max(0, placed - rooms), placed, tonumber(l[3]) or 0}
    local better = best == nil
    if not better then
      for i = 1, 3 do
        if load[i] ~= best_load[i] then better = load[i] < best_load[i]; break end
        if i == 3 then better = id < best end
      end
    end
    if better then best, best_load = id, load end
  else
    redis.call('SREM', KEYS[2], id)
  end
end
if best == nil then return false end
redis.call('SET', KEYS[1], best, 'EX', room_ttl)
redis.call('ZADD', prefix .. 'node:' .. best .. ':rooms', now, room)
redis.call('EXPIRE', prefix .. 'node:' .. best .. ':rooms', room_ttl)
if current then
  redis.call('ZREM', prefix .. 'node:' .. current .. ':rooms', room)
  return {best, 1}
end
return {best, 0}
"""

# A node claims its rooms: kept when unplaced, already its own, or placed on a dead node; returns the rooms it lost.
_HEARTBEAT = """
local prefix, node, room_ttl = ARGV[1], ARGV[2], tonumber(ARGV[5])
local now = tonumber(redis.call('TIME')[1])
local placed = prefix .. 'node:' .. node .. ':rooms'
redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[4])
local fields = tonumber(ARGV[6])
if fields > 0 then
  redis.call('HSET', KEYS[2], unpack(ARGV, 7, 6 + 2 * fields))
  redis.call('EXPIRE', KEYS[2], room_ttl)
end
redis.call('SADD', KEYS[3], node)
local lost = {}
for i = 7 + 2 * fields, #ARGV do
  local key = prefix .. 'room:' .. ARGV[i]
  local owner = redis.call('GET', key)
  if (not owner) or owner == node or redis.call('EXISTS', prefix .. 'node:' .. owner .. ':alive') == 0 then
    redis.call('SET', key, node, 'EX', room_ttl)
    redis.call('ZADD', placed, now, ARGV[i])
  else
    redis.call('ZREM', placed, ARGV[i])
    table.insert(lost, ARGV[i])
  end
end
redis.call('ZREMRANGEBYSCORE', placed, '-inf', now - """ + str(PENDING) + """)
redis.call('EXPIRE', placed, room_ttl)
return lost
"""

_RELEASE = """
redis.call('ZREM', KEYS[2], ARGV[2])
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1], KEYS[3]) end
return 0
"""


def degraded(exc: BaseException) -> MediaError:
    """What a participant is told when the cluster's Redis cannot be reached."""
    return MediaError(DEGRADED, f"service degraded: the cluster's Redis cannot be reached ({exc}); try again shortly")


def default_node_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"[:64]


class Placement:
    def __init__(self, redis: Redis, keys: Keys, node_timeout: float) -> None:
        self._redis = redis
        self._keys = keys
        self._node_timeout = node_timeout
        # A placement outlives its node's heartbeats by this much: long enough to survive a Redis hiccup,
        # short enough that a dead node's rooms do not linger in Redis.
        self.room_ttl = max(60, int(node_timeout * 30))
        self._place = redis.register_script(_PLACE)
        self._heartbeat = redis.register_script(_HEARTBEAT)
        self._release = redis.register_script(_RELEASE)

    async def place(self, room_id: str) -> tuple[str, bool]:
        """The live node ``room_id`` lives on (placing it now if needed), and whether it moved from a dead node.

        Raises ``MediaError`` (``service-degraded``) when Redis is unreachable or no media node is alive.
        """
        try:
            placed = await self._place(keys=[self._keys.room(room_id), self._keys.nodes],
                                       args=[self._keys.prefix, self.room_ttl, room_id])
        except RedisError as exc:
            raise degraded(exc) from None
        if not placed:
            raise MediaError(DEGRADED, "service degraded: no media node is running; try again shortly")
        return _text(placed[0]), bool(placed[1])

    async def heartbeat(self, node_id: str, incarnation: str, load: dict[str, Any], rooms: list[str]) -> list[str]:
        """Renew ``node_id``'s liveness and load, re-assert its rooms; returns the rooms now placed elsewhere."""
        fields = [str(x) for item in load.items() for x in item]
        keys = [self._keys.alive(node_id), self._keys.node(node_id), self._keys.nodes]
        args = [self._keys.prefix, node_id, incarnation, int(self._node_timeout * 1000), self.room_ttl,
                len(load), *fields, *rooms]
        return [_text(room) for room in await self._heartbeat(keys=keys, args=args)]

    async def claim(self, node_id: str, incarnation: str, load: dict[str, Any], room_id: str) -> bool:
        """Whether ``room_id`` is (now) placed on ``node_id``."""
        return not await self.heartbeat(node_id, incarnation, load, [room_id])

    async def release(self, node_id: str, room_id: str) -> None:
        """The room emptied: forget its placement and recording, unless it was moved to another node meanwhile."""
        keys = [self._keys.room(room_id), self._keys.placed(node_id), self._keys.recording(room_id)]
        await self._release(keys=keys, args=[node_id, room_id])

    async def incarnations(self, node_ids: list[str]) -> dict[str, str | None]:
        """Each node's current incarnation, None for a dead one. Raises ``RedisError`` when Redis is unreachable."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for node_id in node_ids:
                pipe.get(self._keys.alive(node_id))
            values = await pipe.execute()
        return {node_id: _text(v) if v is not None else None for node_id, v in zip(node_ids, values)}

    async def live_nodes(self) -> list[str]:
        """Ids of the media nodes whose liveness key exists. Raises ``RedisError`` when Redis is unreachable."""
        node_ids = sorted(_text(n) for n in await self._redis.smembers(self._keys.nodes))
        return [n for n, incarnation in (await self.incarnations(node_ids)).items() if incarnation is not None]

    async def retire(self, node_id: str) -> None:
        """A node stopping cleanly: dead at once, so its rooms are placed again without waiting for the timeout."""
        await self._redis.delete(self._keys.alive(node_id))
        await self._redis.srem(self._keys.nodes, node_id)

    async def owner(self, room_id: str) -> str | None:
        value = await self._redis.get(self._keys.room(room_id))
        return _text(value) if value is not None else None


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
