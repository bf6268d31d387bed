"""What was shared in each room, and who attended it, in Redis (cluster mode), behind
``signaling.sharing.record.SharedItems``: an image shared by a participant on one signaling process is listed, and
its room's record opened, through every process (the image files themselves are on ``sharing.directory``, a shared
filesystem in a cluster). An item and its place in the room's order are one MULTI/EXEC."""

from __future__ import annotations

import json
import time
from typing import Any

from redis import Redis

from signaling.sharing.record import Author, Kind, SharedItem, new_id

from .keys import Keys

__all__ = ["RedisSharedRecord"]


class RedisSharedRecord:
    def __init__(self, redis: Redis, keys: Keys) -> None:
        self._redis = redis
        self._keys = keys

    def new_id(self) -> str:
        return new_id()

    def add(self, room_id: str, kind: Kind, author: Author, data: dict[str, Any],
            item_id: str | None = None) -> SharedItem:
        item = SharedItem(item_id or self.new_id(), room_id, time.time(), kind, author, data)
        stored = {"id": item.id, "created_at": item.created_at, "kind": kind, "author_username": author.username,
                  "author_name": author.name, "author_facility": author.facility,
                  "participant_id": author.participant_id, "data": data}  # fmt: skip
        pipe = self._redis.pipeline(transaction=True)
        pipe.hset(self._keys.shared(room_id), item.id, json.dumps(stored, ensure_ascii=False))
        pipe.rpush(self._keys.shared_order(room_id), item.id)
        pipe.execute()
        return item

    def get(self, room_id: str, item_id: str) -> SharedItem | None:
        text = self._redis.hget(self._keys.shared(room_id), item_id)
        return None if text is None else _item(room_id, text)

    def list(self, room_id: str) -> list[SharedItem]:
        """Oldest first (by creation time, then the order they were added, as the embedded record)."""
        ids = self._redis.lrange(self._keys.shared_order(room_id), 0, -1)
        if not ids:
            return []
        items = [_item(room_id, text) for text in self._redis.hmget(self._keys.shared(room_id), ids) if text]
        return sorted(items, key=lambda item: item.created_at)

    def attended(self, room_id: str, username: str) -> None:
        self._redis.hsetnx(self._keys.attendance(room_id), username, time.time())

    def has_attended(self, room_id: str, username: str) -> bool:
        return bool(self._redis.hexists(self._keys.attendance(room_id), username))


def _item(room_id: str, text: str) -> SharedItem:
    stored = json.loads(text)
    author = Author(stored["author_username"], stored["author_name"], stored["author_facility"],
                    stored["participant_id"])
    return SharedItem(stored["id"], room_id, stored["created_at"], stored["kind"], author, stored["data"])
