"""Room placement and liveness scripts on a real Redis (keys under a per-test prefix, removed afterwards)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import pytest
from cluster_support import needs_redis
from support import free_port

from cluster.connect import connect
from cluster.keys import Keys
from cluster.placement import Placement
from media.errors import MediaError

pytestmark = needs_redis


@pytest.fixture
async def keys() -> AsyncIterator[Keys]:
    keys = Keys(f"hoichan-test-{uuid.uuid4().hex[:8]}:")
    yield keys
    redis, blocking = connect("redis://127.0.0.1:6379/0")
    found = [key async for key in redis.scan_iter(match=keys.prefix + "*")]
    if found:
        await redis.delete(*found)
    await redis.aclose()
    await blocking.aclose()


@pytest.fixture
async def placement(keys: Keys) -> AsyncIterator[Placement]:
    redis, blocking = connect("redis://127.0.0.1:6379/0")
    yield Placement(redis, keys, node_timeout=0.3)
    await redis.aclose()
    await blocking.aclose()


def load(participants: int, rooms: int = 0, cpu: float = 0) -> dict[str, object]:
    return {"participants": participants, "rooms": rooms, "cpu": cpu}


async def test_a_new_room_goes_to_the_least_loaded_live_node(placement: Placement) -> None:
    await placement.heartbeat("busy", "i1", load(6, 2, 40), ["b1", "b2"])
    await placement.heartbeat("idle", "i2", load(1, 1, 5), ["i1"])
    assert await placement.place("r1") == ("idle", False)
    assert await placement.place("r1") == ("idle", False)  # a placed room stays where it is
    # a room placed but not yet joined counts as one participant, so rooms placed at once spread out
    for n in range(2, 7):
        await placement.place(f"r{n}")
    assert await placement.owner("r6") == "busy"
    assert await placement.live_nodes() == ["busy", "idle"]


async def test_a_dead_nodes_room_is_placed_again_once_for_everyone(placement: Placement) -> None:
    await placement.heartbeat("doomed", "i1", load(0), ["ward"])
    await placement.heartbeat("survivor", "i2", load(9), [])
    assert await placement.place("ward") == ("doomed", False)
    await asyncio.sleep(0.5)  # longer than node_timeout: doomed's liveness key expires
    await placement.heartbeat("survivor", "i2", load(9), [])
    answers = await asyncio.gather(*(placement.place("ward") for _ in range(20)))  # 20 signaling processes at once
    assert {node for node, _ in answers} == {"survivor"}
    assert sum(moved for _, moved in answers) == 1  # replaced once, atomically
    assert await placement.incarnations(["doomed", "survivor"]) == {"doomed": None, "survivor": "i2"}


async def test_no_live_node_is_service_degraded(placement: Placement) -> None:
    with pytest.raises(MediaError) as caught:
        await placement.place("lonely")
    assert caught.value.code == "service-degraded" and "no media node" in caught.value.message


async def test_heartbeat_re_asserts_rooms_and_reports_lost_ones(placement: Placement, keys: Keys) -> None:
    await placement.heartbeat("a", "ia", load(0), ["mine"])
    await placement.heartbeat("b", "ib", load(0), [])
    assert await placement.owner("mine") == "a"
    await placement._redis.delete(keys.room("mine"))  # Redis restarted empty
    assert await placement.heartbeat("a", "ia", load(0), ["mine"]) == []
    assert await placement.owner("mine") == "a"
    await placement._redis.set(keys.room("mine"), "b")  # placed on b while a was taken for dead
    assert await placement.heartbeat("a", "ia", load(0), ["mine"]) == ["mine"]
    await placement.release("a", "mine")  # not a's any more: left alone
    assert await placement.owner("mine") == "b"
    await placement.release("b", "mine")
    assert await placement.owner("mine") is None


async def test_unreachable_redis_fails_fast(keys: Keys) -> None:
    redis, blocking = connect(f"redis://127.0.0.1:{free_port()}/0")
    try:
        started = time.monotonic()
        with pytest.raises(MediaError) as caught:
            await Placement(redis, keys, 2).place("room")
        assert caught.value.code == "service-degraded" and time.monotonic() - started < 1.5
    finally:
        await redis.aclose()
        await blocking.aclose()
