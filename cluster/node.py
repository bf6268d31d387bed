"""A media node: runs a ``MediaService`` (worker processes) and serves the commands signaling sends over Redis.

The node keeps which signaling process spoke last for each participant (its inbox), and sends the notifications
media raises for that participant there. Every heartbeat renews its liveness key, reports its load and re-asserts
its rooms' placements; a room that Redis placed on another node meanwhile (this node was taken for dead) is closed
here, since its participants have already moved.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from media.errors import MediaError
from media.router import Notify
from media.service import MediaService
from media.workers import WorkerPool

from .bus import Responder
from .keys import Keys
from .load import CpuMeter
from .pulse import Pulse
from .placement import Placement

logger = logging.getLogger(__name__)

ORPHAN_AFTER = 3  # node timeouts a signaling process's liveness key must stay missing before its media is ended

# What signaling may ask of a node; ``params`` go to the ``MediaService`` method of the same name.
METHODS = ("join", "leave", "restart", "limit", "answer", "offer", "candidate", "start_recording", "stop_recording",
           "link_test_start", "link_test_answer", "link_test_stop")


class MediaNode:
    def __init__(self, redis: Redis, blocking: Redis, redis_url: str, keys: Keys, node_id: str,
                 heartbeat_interval: float, node_timeout: float, media: Callable[[Notify], MediaService],
                 observe: Notify | None = None) -> None:
        """``media`` builds the service given the notify callback; ``observe`` sees every notification (metrics)."""
        self.node_id = node_id
        self.incarnation = secrets.token_hex(6)
        self.media = media(self._notify)
        self.rooms: dict[str, set[str]] = {}
        self._room_of: dict[str, str] = {}
        self._origin: dict[str, str] = {}  # participant -> inbox of the signaling process that spoke last
        self._redis = redis
        self._keys = keys
        self._recorded: set[str] = set()  # rooms recorded here
        self._placement = Placement(redis, keys, node_timeout)
        self._responder = Responder(redis, blocking, keys, node_id, self._run)
        self._interval = heartbeat_interval
        self._node_timeout = node_timeout
        self._origin_missing: dict[str, float] = {}  # inbox of a signaling process -> first seen without liveness
        self._pulse = Pulse(redis_url, keys.alive(node_id), self.incarnation, heartbeat_interval, node_timeout)
        self._observe = observe
        self._cpu = CpuMeter()  # sampled once per heartbeat: its window is the heartbeat interval
        self._last_load: dict[str, Any] = {}
        self._heartbeats: asyncio.Task[None] | None = None
        self.registered = asyncio.Event()

    async def start(self) -> None:
        if isinstance(self.media, WorkerPool):
            await self.media.start()
        self._heartbeats = asyncio.ensure_future(self._beat_forever())
        self._responder.start()
        self._pulse.start()

    def _log(self, room_id: str | None = None, participant_id: str | None = None) -> dict[str, Any]:
        extra: dict[str, Any] = {"node_id": self.node_id}
        if room_id is not None:
            extra["room_id"] = room_id
        if participant_id is not None:
            extra["participant_id"] = participant_id
        return extra

    # -- load and liveness --------------------------------------------------------------------------------

    def load(self) -> dict[str, Any]:
        stats = self.media.stats()
        pids = [os.getpid(), *(w["pid"] for w in stats.get("workers", []))]
        return {
            "rooms": len(self.rooms),
            "participants": len(self._room_of),
            "streams": stats.get("forwarded_streams", 0),
            "cpu": round(self._cpu.sample(pids), 1),
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "incarnation": self.incarnation,
            "updated_at": round(time.time(), 3),
        }

    async def _beat_forever(self) -> None:
        failing = False
        while True:
            try:
                self._last_load = self.load()
                lost = await self._placement.heartbeat(self.node_id, self.incarnation, self._last_load,
                                                       list(self.rooms))
                if failing or not self.registered.is_set():
                    logger.info("media node %s registered in Redis", self.node_id, extra=self._log())
                failing = False
                self.registered.set()
                for room_id in lost:
                    await self._drop_room(room_id)
                await self._drop_orphans()
                async with self._redis.pipeline(transaction=False) as pipe:
                    for room_id in self._recorded:
                        pipe.expire(self._keys.recording(room_id), self._placement.room_ttl)
                    await pipe.execute()
            except (RedisError, OSError) as exc:
                if not failing:
                    logger.error("media node %s: heartbeat failed (%s); media in progress goes on", self.node_id,
                                 exc, extra=self._log())
                failing = True
                self._origin_missing.clear()  # a process is judged only on what a reachable Redis says
            except Exception:  # a bug must not end the heartbeats: the node would keep rooms it no longer claims
                logger.exception("media node %s: heartbeat failed", self.node_id, extra=self._log())
            await asyncio.sleep(self._interval)

    async def _drop_orphans(self) -> None:
        """End the media of participants whose signaling process died (SIGKILL): nobody can speak for them any
        more, and their browsers rejoin through another process as new participants. A process counts as dead once
        its liveness key has been missing for ``ORPHAN_AFTER`` node timeouts in a row, Redis answering throughout."""
        origins = sorted(set(self._origin.values()))
        if not origins:
            self._origin_missing.clear()
            return
        async with self._redis.pipeline(transaction=False) as pipe:
            for inbox in origins:
                pipe.exists(Keys.process_alive(inbox))
            alive = await pipe.execute()
        now = time.monotonic()
        for inbox, present in zip(origins, alive):
            if present:
                self._origin_missing.pop(inbox, None)
                continue
            since = self._origin_missing.setdefault(inbox, now)
            if now - since < ORPHAN_AFTER * self._node_timeout:
                continue
            self._origin_missing.pop(inbox, None)
            for participant_id in [p for p, o in self._origin.items() if o == inbox]:
                logger.warning("participant %s: its signaling process is gone; ending its media", participant_id,
                               extra=self._log(self._room_of.get(participant_id), participant_id))
                await self._leave(participant_id)

    async def _drop_room(self, room_id: str) -> None:
        """Redis placed this room on another node while this one was unreachable: its participants moved there."""
        logger.warning("room %s was moved to another node; closing it here", room_id, extra=self._log(room_id))
        for participant_id in list(self.rooms.get(room_id, ())):
            await self._leave(participant_id)

    # -- commands -----------------------------------------------------------------------------------------

    async def _run(self, method: str, params: dict[str, Any], reply_to: str) -> Any:
        if method not in METHODS:
            raise MediaError("internal", f"unknown media command {method!r}")
        participant_id = params.get("participant_id", params.get("test_id"))  # a link test is notified like one
        if isinstance(participant_id, str) and method != "leave":
            self._origin[participant_id] = reply_to
        if method == "join":
            return await self._join(params["room_id"], params["participant_id"], params.get("info"))
        if method == "leave":
            await self._leave(params["participant_id"])
            return None
        if method == "start_recording":
            return await self._start_recording(params["room_id"], params.get("meta") or {})
        if method == "stop_recording":
            await self.media.stop_recording(params["room_id"])
            self._recorded.discard(params["room_id"])
            try:
                await self._redis.delete(self._keys.recording(params["room_id"]))
            except RedisError:
                pass  # expires by itself (room_ttl)
            return None
        return await getattr(self.media, method)(**params)

    async def _start_recording(self, room_id: str, meta: dict[str, Any], continued: str | None = None) -> str:
        if room_id not in self.rooms:
            raise MediaError("not-joined", f"room {room_id} has no media session on this node")
        full = {**meta, "node_id": self.node_id, **({"continue": continued} if continued else {})}
        recording_id = str(await self.media.start_recording(room_id, full))
        self._recorded.add(room_id)
        record = json.dumps({"id": recording_id, "meta": meta})
        try:
            await self._redis.set(self._keys.recording(room_id), record, ex=self._placement.room_ttl)
        except RedisError as exc:  # recorded here all the same; only a move to another node would lose it
            logger.error("room %s: recording %s not noted in Redis (%s)", room_id, recording_id, exc,
                         extra=self._log(room_id))
        return recording_id

    async def _continue_recording(self, room_id: str, participant_id: str, record: bytes) -> None:
        """The room moved here from a dead node while recorded: the same recording goes on, as new segments."""
        previous = json.loads(record)
        try:
            await self._start_recording(room_id, previous["meta"], continued=previous["id"])
            logger.warning("room %s: recording %s continues on media node %s", room_id, previous["id"],
                           self.node_id, extra=self._log(room_id))
        except Exception as exc:  # noqa: BLE001 - the call goes on; everyone is told the recording stopped
            logger.exception("room %s: recording %s could not be continued", room_id, previous["id"],
                             extra=self._log(room_id))
            payload = {"active": False, "recordingId": previous["id"], "error": f"recording lost: {exc}"}
            await self._notify(participant_id, "recording-state", payload)

    async def _join(self, room_id: str, participant_id: str, info: dict[str, Any] | None) -> dict[str, str]:
        if self._room_of.get(participant_id) == room_id:
            # Signaling took this node for dead (a heartbeat came too late) while it was only slow: the participant
            # is still here, so its rejoin is a restart of its peer connection.
            await self.media.restart(participant_id)
            return {"node": self.node_id, "incarnation": self.incarnation}
        record = None
        if room_id not in self.rooms:
            try:
                mine = await self._placement.claim(self.node_id, self.incarnation, self._last_load, room_id)
                record = await self._redis.get(self._keys.recording(room_id))  # moved here while recorded?
            except RedisError as exc:
                raise MediaError("service-degraded", f"service degraded: Redis unreachable ({exc})") from None
            if not mine:
                raise MediaError("moved", f"room {room_id} lives on another media node")
            logger.info("room %s opened on media node %s", room_id, self.node_id, extra=self._log(room_id))
        self.rooms.setdefault(room_id, set()).add(participant_id)
        self._room_of[participant_id] = room_id
        try:
            await self.media.join(room_id, participant_id, info)
        except BaseException:
            await self._forget(participant_id)
            raise
        if record is not None and room_id not in self._recorded:
            await self._continue_recording(room_id, participant_id, record)
        logger.info("participant %s joined room %s on media node %s", participant_id, room_id, self.node_id,
                    extra=self._log(room_id, participant_id))
        return {"node": self.node_id, "incarnation": self.incarnation}

    async def _leave(self, participant_id: str) -> None:
        if participant_id not in self._room_of:
            return
        try:
            await self.media.leave(participant_id)
        finally:
            await self._forget(participant_id)

    async def _forget(self, participant_id: str) -> None:
        self._origin.pop(participant_id, None)
        room_id = self._room_of.pop(participant_id, None)
        if room_id is None:
            return
        members = self.rooms.get(room_id, set())
        members.discard(participant_id)
        if not members:
            self.rooms.pop(room_id, None)
            self._recorded.discard(room_id)
            logger.info("room %s closed on media node %s", room_id, self.node_id, extra=self._log(room_id))
            try:
                await self._placement.release(self.node_id, room_id)
            except RedisError:
                pass  # the placement expires by itself (room_ttl)

    async def _notify(self, participant_id: str, event: str, payload: dict[str, Any]) -> None:
        if self._observe is not None:
            await self._observe(participant_id, event, payload)
        inbox = self._origin.get(participant_id)
        if event == "linktest-measured":  # a link test's last word
            self._origin.pop(participant_id, None)
        if inbox is not None:
            await self._responder.send(inbox, {"notify": [participant_id, event, payload]})

    def stats(self) -> dict[str, Any]:
        return {"node_id": self.node_id, "incarnation": self.incarnation, "rooms": len(self.rooms),
                "participants": len(self._room_of), **{k: v for k, v in self.media.stats().items()
                                                      if k not in ("rooms", "participants")}}

    async def close(self) -> None:
        """A clean stop: drop out of Redis at once and send every participant to reconnect on another node."""
        if self._heartbeats is not None:
            self._heartbeats.cancel()
        await asyncio.to_thread(self._pulse.stop)
        await self._responder.close()
        try:
            await self._placement.retire(self.node_id)
        except RedisError:
            pass  # the liveness key expires by itself
        await asyncio.gather(*(self._notify(p, "media-failed", {}) for p in list(self._room_of)))
        await self.media.close()
