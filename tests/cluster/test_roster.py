"""The rooms' rosters in Redis (real Redis, keys under a per-test prefix): capacity decided atomically across
processes, a seat taken back by its resume token on another process, seats of a dead process lapsing once."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from cluster_support import needs_redis
from redis.asyncio import Redis

from cluster.keys import Keys
from cluster.roster import RedisRoster
from signaling.auth import Identity
from signaling.rooms import Participant, RoomRegistry
from signaling.roster import Member

pytestmark = needs_redis

DOCTOR = Identity("bs.huyen", "doctor", "ttyt-muong-te", "BS. Giàng A Páo", ("noi-khoa",))


@pytest.fixture
async def redis() -> AsyncIterator[tuple[Redis, Keys]]:
    client = Redis.from_url("redis://127.0.0.1:6379/0")
    keys = Keys(f"hoichan-test-{uuid.uuid4().hex[:8]}:")
    yield client, keys
    found = [key async for key in client.scan_iter(match=keys.prefix + "*")]
    if found:
        await client.delete(*found)
    await client.aclose()


def guest(room: str, name: str) -> Participant:
    return RoomRegistry.new(room, name, "tram-y-te", Identity(None, "guest", None))


async def test_the_last_seat_goes_to_exactly_one_of_many_processes(redis: tuple[Redis, Keys]) -> None:
    client, keys = redis
    processes = [RedisRoster(client, keys, f"process-{i}", lease=30, interval=1) for i in range(6)]
    first = guest("ward-1", "first")
    assert await processes[0].add(first, limit=3)
    candidates = [guest("ward-1", f"p{i}") for i in range(6)]
    won = await asyncio.gather(*(r.add(p, limit=3) for r, p in zip(processes, candidates)))
    assert sum(won) == 2  # three seats, one taken: two of six concurrent joins on six processes get in
    members = await processes[5].members("ward-1")
    assert sorted(m.public["id"] for m in members) == sorted(
        [first.id] + [p.id for p, ok in zip(candidates, won) if ok])
    assert not await processes[1].add(guest("ward-1", "late"), limit=3)


async def test_members_carry_public_info_and_identity_and_updates(redis: tuple[Redis, Keys]) -> None:
    client, keys = redis
    a, b = RedisRoster(client, keys, "a", lease=30, interval=1), RedisRoster(client, keys, "b", lease=30, interval=1)
    doctor = RoomRegistry.new("ward-2", "BS. Páo", "ttyt-muong-te", DOCTOR)
    assert await a.add(doctor, limit=4)
    doctor.audio_muted = True
    await a.update(doctor)
    [member] = await b.members("ward-2")
    assert member == Member(doctor.public(), DOCTOR)
    assert member.public["audioMuted"] is True
    assert await b.members("ward-other") == []


async def test_a_seat_is_taken_back_on_another_process_and_only_its_speaker_removes_it(
    redis: tuple[Redis, Keys],
) -> None:
    client, keys = redis
    a, b = RedisRoster(client, keys, "a", lease=30, interval=1), RedisRoster(client, keys, "b", lease=30, interval=1)
    doctor = RoomRegistry.new("ward-3", "BS. Páo", "ttyt-muong-te", DOCTOR)
    assert await a.add(doctor, limit=4)
    restored = await b.restore(doctor.resume_token)
    assert restored is not None
    assert (restored.id, restored.room_id, restored.name, restored.identity) == (
        doctor.id, "ward-3", "BS. Páo", DOCTOR)
    assert await b.restore("not-a-token") is None
    assert not await a.remove(doctor)  # process a lost it to b: its late clean-up changes nothing
    assert [m.public["id"] for m in await b.members("ward-3")] == [doctor.id]
    assert await b.remove(restored)
    assert await b.members("ward-3") == []
    assert await b.restore(doctor.resume_token) is None  # a seat given up cannot be resumed


async def test_seats_of_a_dead_process_lapse_once_and_are_reported_once(redis: tuple[Redis, Keys]) -> None:
    client, keys = redis
    dead = RedisRoster(client, keys, "dead", lease=1, interval=0.2)
    alive_a = RedisRoster(client, keys, "alive-a", lease=1, interval=0.2)
    alive_b = RedisRoster(client, keys, "alive-b", lease=1, interval=0.2)
    orphan, kept_a, kept_b = guest("ward-4", "orphan"), guest("ward-4", "kept-a"), guest("ward-4", "kept-b")
    for roster, participant in ((dead, orphan), (alive_a, kept_a), (alive_b, kept_b)):
        assert await roster.add(participant, limit=3)
    reports: list[tuple[str, str]] = []

    async def gone(room: str, member: Member) -> None:
        reports.append((room, member.public["id"]))

    await alive_a.start(lambda: [kept_a], gone)  # the dead process renews nothing
    await alive_b.start(lambda: [kept_b], gone)
    try:
        await asyncio.sleep(3.5)
        assert reports == [("ward-4", orphan.id)]  # swept by one of the two live processes, reported once
        assert sorted(m.public["id"] for m in await alive_a.members("ward-4")) == sorted([kept_a.id, kept_b.id])
        assert await alive_b.add(guest("ward-4", "newcomer"), limit=3)  # the lapsed seat is free again
        assert await dead.restore(orphan.resume_token) is None
    finally:
        await alive_a.close()
        await alive_b.close()
