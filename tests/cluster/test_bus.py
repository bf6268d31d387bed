"""The command bus on a real Redis: replies, errors, notifications in order, timeouts, late requests dropped."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from cluster_support import needs_redis

from cluster.bus import POLL, Caller, Responder, subscribe_forever
from cluster.connect import connect
from cluster.keys import Keys
from media.errors import MediaError

pytestmark = needs_redis


class Node:
    """A responder that runs what the test tells it to, and records what it ran."""

    def __init__(self) -> None:
        self.ran: list[tuple[str, dict[str, Any]]] = []
        self.responder: Responder | None = None

    async def run(self, method: str, params: dict[str, Any], reply_to: str) -> Any:
        self.ran.append((method, params))
        if method == "fail":
            raise MediaError("not-joined", "join a room first")
        if method == "slow":
            await asyncio.sleep(params["seconds"])
        if method == "chatty":  # notifications sent before the reply arrive before it
            assert self.responder is not None
            for n in range(3):
                await self.responder.send(reply_to, {"notify": ["p1", "offer", {"n": n}]})
        return {"echo": params}


@pytest.fixture
async def bus() -> AsyncIterator[tuple[Caller, Responder, Node, list[tuple[str, str, dict[str, Any]]]]]:
    keys = Keys(f"hoichan-test-{uuid.uuid4().hex[:8]}:")
    redis, blocking = connect("redis://127.0.0.1:6379/0")
    node_redis, node_blocking = connect("redis://127.0.0.1:6379/0")
    notes: list[tuple[str, str, dict[str, Any]]] = []

    async def notify(participant_id: str, event: str, payload: dict[str, Any]) -> None:
        notes.append((participant_id, event, payload))

    node = Node()
    caller = Caller(redis, blocking, keys, "sig-1", timeout=1.0, notify=notify)
    node.responder = Responder(node_redis, node_blocking, keys, "n1", node.run)
    caller.start()
    yield caller, node.responder, node, notes
    await caller.close()
    await node.responder.close()
    found = [key async for key in redis.scan_iter(match=keys.prefix + "*")]
    if found:
        await redis.delete(*found)
    for client in (redis, blocking, node_redis, node_blocking):
        await client.aclose()


async def test_calls_replies_errors_and_notifications(bus: Any) -> None:
    caller, responder, node, notes = bus
    responder.start()
    assert await caller.call("n1", "echo", participant_id="p1", sdp="v=0") == {
        "echo": {"participant_id": "p1", "sdp": "v=0"}}
    with pytest.raises(MediaError) as caught:
        await caller.call("n1", "fail")
    assert (caught.value.code, caught.value.message) == ("not-joined", "join a room first")
    await caller.call("n1", "chatty")
    await asyncio.sleep(0.05)
    assert [payload["n"] for _, _, payload in notes] == [0, 1, 2]


async def test_a_node_that_does_not_answer_is_a_clear_timeout(bus: Any) -> None:
    caller, responder, node, _ = bus  # the responder is not started: nobody reads n1's commands
    started = time.monotonic()
    with pytest.raises(MediaError) as caught:
        await caller.call("n1", "answer", participant_id="p1")
    assert caught.value.code == "media-timeout" and "n1 did not answer answer within 1 s" in caught.value.message
    assert time.monotonic() - started < 1.5
    responder.start()  # the node comes back: the stale request is dropped, not run
    await asyncio.sleep(0.3)
    assert await caller.call("n1", "echo") == {"echo": {}}
    assert [method for method, _ in node.ran] == ["echo"]


async def test_a_subscriber_ends_when_cancelled_just_after_its_redis_client_closed() -> None:
    """A shutdown that closes the Redis client under a subscriber, then cancels it: redis-py reconnects and
    re-subscribes inside ``asyncio.wait_for``, which on Python 3.11 can swallow the cancel. The reader must end
    anyway, or the server's shutdown waits on it until the process is killed."""
    redis, blocking = connect("redis://127.0.0.1:6379/0")
    await blocking.aclose()

    async def ignore(data: bytes) -> None:
        pass

    for _ in range(5):
        reader = asyncio.ensure_future(subscribe_forever(redis, [f"test-{uuid.uuid4().hex}"], ignore, "test"))
        await asyncio.sleep(0.2)
        await redis.aclose()
        await asyncio.sleep(0.001)
        reader.cancel()
        done, _ = await asyncio.wait([reader], timeout=3 * POLL)
        assert done, "the subscriber kept running after its cancel"
