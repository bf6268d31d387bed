"""Connection points' caps in Redis answer as the embedded store does, and a change announced by one signaling
process is heard by the others."""

from __future__ import annotations

import asyncio
from pathlib import Path

from cluster_support import Scratch, needs_redis, scratch  # noqa: F401 - a fixture
from redis.asyncio import Redis as AsyncRedis
from support import wait_for

from cluster.point_caps import CapsChannel, RedisCaps
from signaling.caps.store import CapsStore
from signaling.store import connect

pytestmark = needs_redis


def test_caps_are_kept_alike_in_redis_and_in_the_embedded_store(tmp_path: Path, scratch: Scratch) -> None:
    for store in (CapsStore(connect(tmp_path)), RedisCaps(scratch.redis, scratch.keys)):
        assert store.get("p1") is None and not store.delete("p1")
        stored = store.put("p1", 300, None, True, "ktv.lan")
        again = {k: v for k, v in (store.get("p1") or {}).items() if k != "setAt"}
        assert again == {k: v for k, v in stored.items() if k != "setAt"} == {
            "uplinkKbps": 300, "downlinkKbps": None, "audioOnly": True, "setBy": "ktv.lan"}
        store.put("p1", None, 500, False, "quantri")
        assert (store.get("p1") or {})["downlinkKbps"] == 500 and (store.get("p1") or {})["uplinkKbps"] is None
        assert store.delete("p1") and store.get("p1") is None


async def test_a_change_announced_by_one_process_is_heard_by_the_others(scratch: Scratch) -> None:
    clients = [AsyncRedis.from_url(scratch.url) for _ in range(2)]
    one, other = (CapsChannel(client, scratch.keys) for client in clients)
    heard: list[str] = []

    async def changed(point_id: str) -> None:
        heard.append(point_id)

    other.start(changed)
    try:
        for _ in range(50):  # until the listener has subscribed (a loaded machine takes its time)
            await one.announce("ttyt-muong-te-hc1")
            if heard:
                break
            await asyncio.sleep(0.1)
        await wait_for(lambda: bool(heard), timeout=5)
        assert set(heard) == {"ttyt-muong-te-hc1"}
    finally:
        await other.close()
        for client in clients:
            await client.aclose()
