"""Link-quality samples in Redis give the timeline the embedded store gives; samples written by two processes end
up in one room's timeline; samples that cannot be written while Redis is unreachable are kept and written later."""

from __future__ import annotations

from pathlib import Path
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
import redis
from cluster_support import Scratch, needs_redis, scratch  # noqa: F401 - a fixture
from support import free_port

from cluster.connect import connect_records
from cluster.link_samples import RedisSamples
from signaling.auth import Identity
from signaling.link_history import LinkHistory, SqliteSamples
from signaling.rooms import Participant
from signaling.store import connect

pytestmark = needs_redis


def person(number: int, facility: str) -> Participant:
    identity = Identity(role="doctor", user_id=f"bs.{number}", display_name=f"BS {number}", facility_id=facility)
    return Participant(id=f"p{number}", room_id="lh", name=f"BS {number}", facility=facility, identity=identity,
                       resume_token=f"t{number}")


def sample(at: float, grade: str, loss: float | None) -> dict[str, Any]:
    return {"at": at, "grade": grade, "mos": 4.1, "rttMs": 40.5, "jitterMs": 2.0, "lossUp": loss, "lossDown": 0.0,
            "sendKbps": 900.0, "recvKbps": 850.25}


def feed(first: LinkHistory, second: LinkHistory) -> None:
    """Two processes, each with its own participant of the room (and one sample arriving late)."""
    a, b = person(1, "ttyt-muong-te"), person(2, "bv-bach-mai")
    for n in range(4):
        first.add(a, sample(100.0 + 2 * n, ("good", "poor")[n % 2], 0.01 * n))
        second.add(b, sample(101.0 + 2 * n, "excellent", None))
    first.flush()
    adaptation = {"audioOnly": True, "uplinkCapKbps": 300, "downlinkCapKbps": None,
                  "videos": {"p1": {"layer": None, "paused": True, "reason": "audio-only"}}}
    second.add(b, {**sample(99.0, "good", 0.5), "adaptation": adaptation})
    second.room_closed("lh")


def test_a_rooms_timeline_is_the_same_through_both_backends(tmp_path: Path, scratch: Scratch) -> None:
    feed(LinkHistory(SqliteSamples(connect(tmp_path))), LinkHistory(SqliteSamples(connect(tmp_path))))
    feed(LinkHistory(RedisSamples(scratch.redis, scratch.keys)), LinkHistory(RedisSamples(scratch.redis, scratch.keys)))
    embedded, clustered = LinkHistory(SqliteSamples(connect(tmp_path))), LinkHistory(
        RedisSamples(scratch.redis, scratch.keys))
    assert clustered.timeline("lh") == embedded.timeline("lh")
    assert clustered.facilities("lh") == embedded.facilities("lh") == {"ttyt-muong-te", "bv-bach-mai"}
    timeline = clustered.timeline("lh")
    assert [p["participantId"] for p in timeline] == ["p2", "p1"]  # p2's first sample (99.0) is the earliest
    assert [s["at"] for s in timeline[0]["samples"]] == [99.0, 101.0, 103.0, 105.0, 107.0]
    assert timeline[0]["samples"][0]["adaptation"]["uplinkCapKbps"] == 300
    assert timeline[0]["samples"][1]["adaptation"] is None
    assert timeline[1]["gradeShare"] == {"good": 0.5, "poor": 0.5} and clustered.timeline("nowhere") == []


class Reconnecting:
    """The Redis samples store, reached through whichever client is current (one to nowhere, then the real one)."""

    def __init__(self, store: RedisSamples) -> None:
        self.store = store

    def write(self, rows: Sequence[tuple[Any, ...]]) -> None:
        self.store.write(rows)

    def rows(self, room_id: str) -> list[Mapping[str, Any]]:
        return self.store.rows(room_id)

    def facilities(self, room_id: str) -> set[str]:
        return self.store.facilities(room_id)


def test_samples_not_written_while_redis_is_unreachable_are_written_later(scratch: Scratch) -> None:
    down = connect_records(f"redis://127.0.0.1:{free_port()}/0")  # nobody listens there
    store = Reconnecting(RedisSamples(down, scratch.keys))
    history = LinkHistory(store)
    a = person(1, "ttyt-muong-te")
    history.add(a, sample(100.0, "good", 0.0))
    history.flush()  # fails: kept
    with pytest.raises(redis.ConnectionError):  # reading fails too, at once: nothing pretends the room is empty
        history.timeline("lh")
    store.store = RedisSamples(scratch.redis, scratch.keys)  # Redis is back
    history.add(a, sample(102.0, "poor", 0.1))
    assert [s["at"] for s in history.timeline("lh")[0]["samples"]] == [100.0, 102.0]
