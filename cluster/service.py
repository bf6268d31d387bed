"""``MediaService`` for a signaling process in a cluster: every call goes to the room's media node over Redis.

A participant's calls go to the node its room was placed on when it joined. A watcher checks the liveness keys of
those nodes; when one is gone (or came back as a new incarnation, with nothing of ours), its participants get
``media-failed``, and their ``restart`` places the room again (the dead node's placement is replaced atomically,
so everyone of the room lands on the same live node) and joins them there: WorkerPool's recovery, across machines.
While Redis cannot be reached nothing is declared dead: media in progress keeps flowing, new requests fail with
``service-degraded``.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from media.errors import MediaError
from media.router import Notify

from .bus import Caller
from .keys import Keys
from .placement import DEGRADED, Placement, degraded

logger = logging.getLogger(__name__)

CLOSE_TIMEOUT = 3.0  # seconds a stopping signaling process spends ending its participants' media on the nodes


@dataclass
class _Seat:
    room_id: str
    info: dict[str, Any] = field(default_factory=dict)
    node_id: str | None = None
    incarnation: str | None = None  # of the node it joined, once the node answered the join
    lost: bool = False  # its node died: calls fail until a restart joins it again, on the room's new node


class ClusterMediaService:
    def __init__(self, redis: Redis, blocking: Redis, keys: Keys, process_id: str, notify: Notify,
                 node_timeout: float, request_timeout: float, check_interval: float) -> None:
        self._notify = notify
        self._redis = redis
        self._placement = Placement(redis, keys, node_timeout)
        self._caller = Caller(redis, blocking, keys, process_id, request_timeout, self._from_node)
        self._link_tests: dict[str, str] = {}  # running link test -> the node it runs on
        self._node_timeout = node_timeout
        self._check_interval = check_interval
        self._seats: dict[str, _Seat] = {}
        self._watcher: asyncio.Task[None] | None = None
        self._redis_ok_since: float | None = None  # when Redis last became reachable; None while it is not
        self.nodes_alive = 0

    async def start(self) -> None:
        self._caller.start()
        self._watcher = asyncio.ensure_future(self._watch())

    # -- failure detection ----------------------------------------------------------------------------------

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self._check_interval)
            try:
                await self.check_nodes()
            except Exception:
                logger.exception("checking media nodes failed")

    async def check_nodes(self) -> None:
        """Tell the participants of nodes that died (or restarted) to reconnect."""
        joined = {s.node_id for s in self._seats.values() if s.node_id is not None and not s.lost}
        try:
            # this process's own liveness: nodes end the media of a signaling process that died
            await self._redis.set(Keys.process_alive(self._caller.inbox), "1", px=int(self._node_timeout * 1000))
            incarnations = await self._placement.incarnations(sorted(joined))
            self.nodes_alive = len(await self._placement.live_nodes())
        except (RedisError, OSError):
            if self._redis_ok_since is not None:
                logger.error("Redis unreachable: media in progress goes on, new joins are refused")
            self._redis_ok_since = None
            return
        now = time.monotonic()
        if self._redis_ok_since is None:
            self._redis_ok_since = now
            logger.info("Redis reachable")
        if now - self._redis_ok_since < self._node_timeout:
            return  # just reconnected (Redis may have restarted): give nodes one timeout to register again
        for node_id, incarnation in incarnations.items():
            seats = [(pid, s) for pid, s in self._seats.items() if s.node_id == node_id and not s.lost
                     and s.incarnation is not None and s.incarnation != incarnation]
            if seats:
                logger.error("media node %s is gone (%s); %d participant(s) reconnect elsewhere", node_id,
                             "restarted" if incarnation else "no heartbeat", len(seats), extra={"node_id": node_id})
            for participant_id, seat in seats:
                seat.lost = True
                logger.info("participant %s: media node lost", participant_id,
                            extra={"participant_id": participant_id, "room_id": seat.room_id, "node_id": node_id})
                asyncio.ensure_future(self._notify(participant_id, "media-failed", {}))

    # -- MediaService ---------------------------------------------------------------------------------------

    async def prepare(self, room_id: str) -> None:
        await self._placement.place(room_id)

    async def _join_on_node(self, participant_id: str, seat: _Seat) -> None:
        for attempt in range(2):
            try:
                node_id, moved = await self._placement.place(seat.room_id)
            except MediaError:
                seat.lost = True
                raise
            if moved:
                logger.warning("room %s placed again, on media node %s (its node died)", seat.room_id, node_id,
                               extra={"room_id": seat.room_id, "node_id": node_id})
            seat.node_id, seat.incarnation, seat.lost = node_id, None, False
            try:
                joined = await self._caller.call(node_id, "join", room_id=seat.room_id,
                                                 participant_id=participant_id, info=seat.info)
            except MediaError as exc:
                if exc.code == "moved" and attempt == 0:
                    continue  # the placement changed between our look-up and the node's claim: look again
                seat.lost = True  # not joined anywhere: the next restart-media tries again
                raise
            seat.incarnation = joined["incarnation"]
            return

    def _seat(self, participant_id: str) -> _Seat:
        seat = self._seats.get(participant_id)
        if seat is None or seat.node_id is None:
            raise MediaError("not-joined", "join a room first")
        return seat

    async def join(self, room_id: str, participant_id: str, info: dict[str, Any] | None = None) -> None:
        seat = self._seats[participant_id] = _Seat(room_id, info or {})
        try:
            await self._join_on_node(participant_id, seat)
        except BaseException:
            self._seats.pop(participant_id, None)
            raise

    async def adopt(self, room_id: str, participant_id: str, info: dict[str, Any] | None = None) -> None:
        """A participant whose signaling process died resumed here: its next ``restart`` joins it through this
        process (the room's node restarts its peer connection and sends the offer here)."""
        self._seats[participant_id] = _Seat(room_id, info or {}, lost=True)

    async def restart(self, participant_id: str) -> None:
        seat = self._seats.get(participant_id)
        if seat is not None and seat.lost:  # its node died, or it was adopted: join the room's (new) node
            await self._join_on_node(participant_id, seat)
            return
        await self._call(participant_id, "restart")

    async def leave(self, participant_id: str) -> None:
        seat = self._seats.pop(participant_id, None)
        if seat is None or seat.node_id is None or seat.lost:
            return
        try:
            await self._caller.call(seat.node_id, "leave", participant_id=participant_id)
        except MediaError as exc:  # the node is gone or unreachable: nothing of ours is left to end there
            logger.warning("leave of %s not delivered: %s", participant_id, exc.message,
                           extra={"participant_id": participant_id, "room_id": seat.room_id})

    async def _call(self, participant_id: str, method: str, **params: Any) -> Any:
        seat = self._seat(participant_id)
        if seat.lost:
            raise MediaError("media-failed", "the media node of this room stopped; send restart-media")
        assert seat.node_id is not None
        return await self._caller.call(seat.node_id, method, participant_id=participant_id, **params)

    async def limit(self, participant_id: str, limits: dict[str, Any]) -> None:
        seat = self._seats.get(participant_id)
        if seat is None:
            raise MediaError("not-joined", "join a room first")
        seat.info["limits"] = limits  # a join on the room's next node carries them
        if not seat.lost and seat.node_id is not None:
            await self._call(participant_id, "limit", limits=limits)

    async def answer(self, participant_id: str, sdp: str) -> None:
        await self._call(participant_id, "answer", sdp=sdp)

    async def offer(self, participant_id: str, sdp: str) -> str:
        return str(await self._call(participant_id, "offer", sdp=sdp))

    async def candidate(
        self, participant_id: str, candidate: str, sdp_mid: str | None, sdp_mline_index: int | None
    ) -> None:
        await self._call(participant_id, "candidate", candidate=candidate, sdp_mid=sdp_mid,
                         sdp_mline_index=sdp_mline_index)

    async def start_recording(self, room_id: str, meta: dict[str, Any]) -> str:
        node_id, _ = await self._placement.place(room_id)
        return str(await self._caller.call(node_id, "start_recording", room_id=room_id, meta=meta))

    async def stop_recording(self, room_id: str) -> None:
        try:
            node_id = await self._placement.owner(room_id)
        except RedisError as exc:
            raise MediaError("service-degraded", f"service degraded: Redis unreachable ({exc})") from None
        if node_id is not None:
            await self._caller.call(node_id, "stop_recording", room_id=room_id)

    async def _from_node(self, participant_id: str, event: str, payload: dict[str, Any]) -> None:
        if event == "linktest-measured":
            self._link_tests.pop(participant_id, None)
        await self._notify(participant_id, event, payload)

    async def link_test_start(self, test_id: str, plan: dict[str, Any]) -> list[dict[str, str]]:
        """On a live media node chosen at random: a link test measures the path to the media servers, and any of
        them stands for the others."""
        try:
            nodes = await self._placement.live_nodes()
        except (RedisError, OSError) as exc:
            raise degraded(exc) from None
        if not nodes:
            raise MediaError(DEGRADED, "service degraded: no media node is running; try again shortly")
        node_id = self._link_tests[test_id] = random.choice(nodes)
        try:
            return list(await self._caller.call(node_id, "link_test_start", test_id=test_id, plan=plan))
        except BaseException:
            self._link_tests.pop(test_id, None)
            raise

    async def link_test_answer(self, test_id: str, path: str, sdp: str) -> None:
        node_id = self._link_tests.get(test_id)
        if node_id is None:
            raise MediaError("not-found", f"no link test {test_id} is running")
        await self._caller.call(node_id, "link_test_answer", test_id=test_id, path=path, sdp=sdp)

    async def link_test_stop(self, test_id: str, reason: str) -> None:
        node_id = self._link_tests.get(test_id)
        if node_id is not None:
            await self._caller.call(node_id, "link_test_stop", test_id=test_id, reason=reason)

    def stats(self) -> dict[str, Any]:
        rooms = {s.room_id for s in self._seats.values()}
        return {"rooms": len(rooms), "participants": len(self._seats), "nodes_alive": self.nodes_alive,
                "redis": self._redis_ok_since is not None}

    async def close(self) -> None:
        """End this process's media sessions on the nodes (best effort, a few seconds at most)."""
        if self._watcher is not None:
            self._watcher.cancel()
        leaving = asyncio.gather(*(self.leave(p) for p in list(self._seats)), return_exceptions=True)
        try:
            await asyncio.wait_for(leaving, CLOSE_TIMEOUT)
        except TimeoutError:
            logger.warning("some media sessions were not ended on their nodes; the nodes end them by themselves")
        await self._caller.close()
