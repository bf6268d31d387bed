"""What was shared in a room, kept in Redis, reads as the embedded record reads: the same items in the same order,
the same attendance."""

from __future__ import annotations

from pathlib import Path

from cluster_support import Scratch, needs_redis, scratch  # noqa: F401 - a fixture

from cluster.shared_record import RedisSharedRecord
from signaling.sharing.record import Author, SharedItems, SharedRecord
from signaling.store import connect

pytestmark = needs_redis
DOCTOR = Author("bs.huyen", "BS. Giàng A Páo", "ttyt-muong-te", "p1")
SPECIALIST = Author("pgs.tim", "PGS. Nguyễn Văn Tâm", "bv-bach-mai", "p2")


def fill(record: SharedItems) -> None:
    record.add("ward", "image", DOCTOR, {"format": "jpeg", "width": 64, "height": 48, "caption": "Phim X-quang"},
               item_id="a" * 32)
    record.add("ward", "vitals", SPECIALIST, {"values": {"hr": 88.5, "spo2": 97}, "units": {"hr": "bpm"}},
               item_id="b" * 32)
    record.add("ward", "annotation", DOCTOR, {"image": "a" * 32, "pin": [0.25, 0.5], "text": "Tổn thương"},
               item_id="c" * 32)
    record.add("other", "vitals", DOCTOR, {"values": {"hr": 60}, "units": {}}, item_id="d" * 32)
    record.attended("ward", "bs.huyen")
    record.attended("ward", "pgs.tim")
    record.attended("ward", "bs.huyen")  # again: nothing changes


def read(record: SharedItems) -> dict[str, object]:
    strip = lambda items: [(i.id, i.room_id, i.kind, i.author, i.data) for i in items]  # noqa: E731 - times differ
    return {
        "ward": strip(record.list("ward")),
        "other": strip(record.list("other")),
        "none": record.list("nowhere"),
        "got": strip([item for item in [record.get("ward", "b" * 32)] if item is not None]),
        "wrong room": record.get("other", "a" * 32),
        "attended": [record.has_attended(r, u) for r in ("ward", "other") for u in ("bs.huyen", "pgs.tim", "x")],
    }


def test_shared_items_read_the_same_through_both_backends(tmp_path: Path, scratch: Scratch) -> None:
    fill(SharedRecord(connect(tmp_path)))
    fill(RedisSharedRecord(scratch.redis, scratch.keys))
    clustered = read(RedisSharedRecord(scratch.redis, scratch.keys))
    assert clustered == read(SharedRecord(connect(tmp_path)))
    assert [item[0] for item in clustered["ward"]] == ["a" * 32, "b" * 32, "c" * 32]  # type: ignore[union-attr]
    assert clustered["attended"] == [True, True, False, False, False, False] and clustered["wrong room"] is None
    assert len(clustered["got"]) == 1  # type: ignore[arg-type]
    item = RedisSharedRecord(scratch.redis, scratch.keys).get("ward", "a" * 32)
    assert item is not None and item.public()["data"]["url"] == f"/api/rooms/ward/shared/{'a' * 32}/image"
