"""Lobby presence shared by every signaling process through Redis: who is online (anywhere) and who is on duty.

Each process keeps its own lobby connections (``Presence``) and publishes, on ``sync``, which accounts it has
online: one sorted-set entry ``<username> <process>`` per account and process, scored by when it lapses, so the
accounts of a process that died go offline by themselves ``lease`` seconds later. Duty is a Redis set (a doctor's
own choice, kept until changed). ``sync`` also reads the whole picture back, so ringing (``ringable``) and the
lobby summary see doctors on every process; it runs before each dispatch decision and every ``interval``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import logging
import sqlite3
from dataclasses import asdict

from redis.asyncio import Redis
from redis.exceptions import RedisError

from signaling.auth import Identity
from signaling.presence import Presence

from .keys import Keys

logger = logging.getLogger(__name__)


class RedisPresence(Presence):
    def __init__(self, db: sqlite3.Connection, redis: Redis, keys: Keys, process_id: str, lease: float,
                 interval: float) -> None:
        super().__init__(db)
        self._redis = redis
        self._keys = keys
        self._process = process_id
        self._lease = lease
        self._interval = interval
        self._duty_changes: dict[str, bool] = {}
        self._published: set[str] = set()  # accounts this process has written as online
        self.on_duty = set()  # from Redis, not from this process's disk
        self._everyone: dict[str, Identity] = {}  # accounts online on any process
        self._task: asyncio.Task[None] | None = None

    def set_duty(self, username: str, on: bool, now: datetime.datetime) -> None:
        super().set_duty(username, on, now)  # this process's disk, as in one process
        self._duty_changes[username] = on

    async def sync(self) -> None:
        """Write this process's accounts and duty changes, then read everyone's (``RedisError`` if unreachable)."""
        mine = dict(self._identities)
        changes, self._duty_changes = self._duty_changes, {}
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.time()
                for username, on in changes.items():
                    (pipe.sadd if on else pipe.srem)(self._keys.duty, username)
                for username in self._published - set(mine):
                    pipe.zrem(self._keys.online, f"{username} {self._process}")
                if mine:
                    pipe.hset(self._keys.identities, mapping={
                        u: json.dumps({**asdict(i), "specialties": list(i.specialties)}) for u, i in mine.items()})
                now = int((await pipe.execute())[0][0])
            async with self._redis.pipeline(transaction=True) as pipe:
                if mine:
                    pipe.zadd(self._keys.online, {f"{u} {self._process}": now + self._lease for u in mine})
                pipe.zremrangebyscore(self._keys.online, "-inf", now)
                pipe.zrange(self._keys.online, 0, -1)
                pipe.smembers(self._keys.duty)
                pipe.hgetall(self._keys.identities)
                *_, online, duty, identities = await pipe.execute()
        except BaseException:
            for username, on in changes.items():  # not written: try again on the next sync
                self._duty_changes.setdefault(username, on)
            raise
        self._published = set(mine)
        usernames = {entry.decode().rsplit(" ", 1)[0] for entry in online}
        self.on_duty = {name.decode() for name in duty}
        everyone = {}
        for username in usernames:
            raw = identities.get(username.encode())
            if raw is not None:
                data = json.loads(raw)
                everyone[username] = Identity(**{**data, "specialties": tuple(data["specialties"])})
        self._everyone = {**everyone, **mine}

    def known(self) -> dict[str, Identity]:
        return {**self._everyone, **self._identities}

    async def start(self) -> None:
        self._task = asyncio.ensure_future(self._sync_forever())

    async def _sync_forever(self) -> None:
        failing = False
        while True:
            try:
                await self.sync()
                failing = False
            except (RedisError, OSError) as exc:
                if not failing:
                    logger.error("lobby presence not shared: Redis unreachable (%s)", exc)
                failing = True
            await asyncio.sleep(self._interval)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
