"""Redis going away: media in progress keeps flowing, new joins fail fast and clearly, everyone re-registers when
Redis is back (a private redis-server, so the shared one is never disturbed)."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import Any

from cluster_support import Cluster, PrivateRedis, join_ack, needs_redis_server, reachable
from support import PatternVideoTrack, ToneAudioTrack, free_port, wait_for

from client.participant import Participant


async def test_a_join_with_redis_unreachable_gets_service_degraded_at_once(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    assert not reachable("127.0.0.1", port)
    cluster = Cluster(tmp_path, f"redis://127.0.0.1:{port}/0")
    try:
        signaling = cluster.add_signaling()
        ack, took = await join_ack(signaling.url, "no-redis")
        assert ack["ok"] is False and ack["error"]["code"] == "service-degraded", ack
        assert "Redis cannot be reached" in ack["error"]["message"] and took < 2, (ack, took)
        status, health = await signaling.get("/healthz")
        assert status == 200 and health["redis"] is False
    finally:
        cluster.stop()


def frames(x: Participant, y: Participant) -> int:
    received = x.video_from(y.id or "")
    return received.frames if received is not None else 0


def kbps(x: Participant, y: Participant) -> list[int]:
    """The video kbit/s ``x`` received from ``y`` in each of the last 8 seconds (why it froze, if it did)."""
    received = x.video_from(y.id or "")
    return [] if received is None else received.received_bytes.each_second(8)


@needs_redis_server
async def test_media_survives_redis_going_away_and_everyone_re_registers(tmp_path: Path) -> None:
    redis = PrivateRedis(tmp_path)
    redis.start()
    cluster = Cluster(tmp_path, redis.url)
    people: list[Participant] = []
    try:
        signaling = cluster.add_signaling()
        cluster.add_node("solo")
        await cluster.registered("solo")
        people = [Participant(signaling.url, "steady", name, tracks=[PatternVideoTrack(), ToneAudioTrack()])
                  for name in "AB"]
        people.append(late := Participant(signaling.url, "after", "C", tracks=[PatternVideoTrack()], consume=False))
        a, b = people[:2]
        adaptation: dict[str, list[dict[str, Any]]] = {"A": [], "B": []}  # what each one's downlink did, if it froze
        for person in (a, b):
            person.sio.on("adaptation", lambda data, name=person.name: adaptation[name].append(data))
        await a.join()
        await b.join()
        await wait_for(lambda: frames(a, b) > 10 and frames(b, a) > 10, 15)

        # Redis stops answering (its process frozen: connections hang): a join fails within a couple of seconds
        assert redis.proc is not None
        os.kill(redis.proc.pid, signal.SIGSTOP)
        try:
            ack, took = await join_ack(signaling.url, "frozen")
            assert ack["ok"] is False and ack["error"]["code"] == "service-degraded" and took < 4, (ack, took)
        finally:
            os.kill(redis.proc.pid, signal.SIGCONT)

        # Redis dies and comes back empty (no persistence): media in progress never notices
        redis.stop()
        seen = (frames(a, b), frames(b, a))
        ack, took = await join_ack(signaling.url, "down")
        assert ack["ok"] is False and ack["error"]["code"] == "service-degraded" and took < 2, (ack, took)
        await asyncio.sleep(3)  # longer than the node timeout
        assert frames(a, b) > seen[0] + 10 and frames(b, a) > seen[1] + 10  # flowing (a loaded machine decodes slowly)
        redis.start()
        await cluster.registered("solo")  # the node re-registered...
        await wait_for(lambda: cluster.node_of("steady") == "solo", 5)  # ...with its room's placement
        await asyncio.sleep(3)  # signaling saw Redis back; a node that re-registered is not taken for dead
        seen = (frames(a, b), frames(b, a))
        await asyncio.sleep(3)  # (a loaded machine decodes in fits and starts: a window of seconds, not one)
        assert frames(a, b) > seen[0] + 20 and frames(b, a) > seen[1] + 20, (
            seen, frames(a, b), frames(b, a), kbps(a, b), kbps(b, a), adaptation)
        assert not a.errors and not b.errors, a.errors + b.errors  # never told to reconnect

        await late.join()  # new rooms work again
        await late.wait_negotiated()
        assert cluster.node_of("after") == "solo"
    finally:
        await asyncio.gather(*(p.leave() for p in people))
        cluster.stop()
        redis.stop()
