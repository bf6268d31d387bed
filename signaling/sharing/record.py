"""What was shared in each room, and who took part in it: the part of the consult record that outlives the call.

Rows live in the embedded SQLite store (``store.py``), keyed by room id and time, so the consult log (keyed by room
id) lists them after the room is gone, and a restart loses nothing. Image bytes are files (``files.py``); a row holds
their metadata. ``attendance`` remembers which accounts joined a room: they, and admins, may look at its record.
In a cluster the rows are in Redis instead (``cluster.shared_record.RedisSharedRecord``), so a room's record is
the same on every signaling process.
"""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from dataclasses import dataclass
from typing import Any, Literal, Protocol

__all__ = ["Author", "Kind", "SharedItem", "SharedItems", "SharedRecord", "new_id"]

Kind = Literal["image", "vitals", "annotation"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS shared_items (
    id TEXT PRIMARY KEY,
    room_id TEXT NOT NULL,
    created_at REAL NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('image', 'vitals', 'annotation')),
    author_username TEXT NOT NULL,
    author_name TEXT NOT NULL,
    author_facility TEXT NOT NULL,
    participant_id TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS shared_items_by_room ON shared_items (room_id, created_at);
CREATE TABLE IF NOT EXISTS attendance (
    room_id TEXT NOT NULL,
    username TEXT NOT NULL,
    first_joined_at REAL NOT NULL,
    PRIMARY KEY (room_id, username)
);
"""


@dataclass(frozen=True)
class Author:
    username: str
    name: str
    facility: str
    participant_id: str


@dataclass(frozen=True)
class SharedItem:
    id: str
    room_id: str
    created_at: float
    kind: Kind
    author: Author
    data: dict[str, Any]

    def public(self) -> dict[str, Any]:
        """The item as the room page and the API show it (protocol.md ``SharedItem``)."""
        data = dict(self.data)
        if self.kind == "image":
            data["url"] = f"/api/rooms/{self.room_id}/shared/{self.id}/image"
        return {
            "id": self.id,
            "room": self.room_id,
            "kind": self.kind,
            "at": self.created_at,
            "author": {
                "username": self.author.username,
                "name": self.author.name,
                "facility": self.author.facility,
                "participantId": self.author.participant_id,
            },
            "data": data,
        }


def new_id() -> str:
    """Server-chosen ids (also the image file names): 32 hex digits, nothing a client can steer."""
    return uuid.uuid4().hex


class SharedItems(Protocol):
    """A room's shared items and attendance, as sharing uses them: the embedded ``SharedRecord`` or, in a cluster,
    ``cluster.shared_record.RedisSharedRecord``."""

    def new_id(self) -> str: ...
    def add(self, room_id: str, kind: Kind, author: Author, data: dict[str, Any],
            item_id: str | None = None) -> SharedItem: ...
    def get(self, room_id: str, item_id: str) -> SharedItem | None: ...
    def list(self, room_id: str) -> list[SharedItem]: ...
    def attended(self, room_id: str, username: str) -> None: ...
    def has_attended(self, room_id: str, username: str) -> bool: ...


class SharedRecord:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        db.executescript(_SCHEMA)

    def new_id(self) -> str:
        return new_id()

    def add(self, room_id: str, kind: Kind, author: Author, data: dict[str, Any], item_id: str | None = None) -> SharedItem:
        item = SharedItem(item_id or self.new_id(), room_id, time.time(), kind, author, data)
        self._db.execute(
            "INSERT INTO shared_items VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                item.id, room_id, item.created_at, kind, author.username, author.name, author.facility,
                author.participant_id, json.dumps(data, ensure_ascii=False),
            ),
        )  # fmt: skip
        return item

    def get(self, room_id: str, item_id: str) -> SharedItem | None:
        row = self._db.execute(
            "SELECT * FROM shared_items WHERE room_id = ? AND id = ?", (room_id, item_id)
        ).fetchone()
        return None if row is None else _item(row)

    def list(self, room_id: str) -> list[SharedItem]:
        rows = self._db.execute(
            "SELECT * FROM shared_items WHERE room_id = ? ORDER BY created_at, rowid", (room_id,)
        ).fetchall()
        return [_item(row) for row in rows]

    def attended(self, room_id: str, username: str) -> None:
        self._db.execute(
            "INSERT OR IGNORE INTO attendance VALUES (?, ?, ?)", (room_id, username, time.time())
        )

    def has_attended(self, room_id: str, username: str) -> bool:
        row = self._db.execute(
            "SELECT 1 FROM attendance WHERE room_id = ? AND username = ?", (room_id, username)
        ).fetchone()
        return row is not None


def _item(row: sqlite3.Row) -> SharedItem:
    author = Author(row["author_username"], row["author_name"], row["author_facility"], row["participant_id"])
    return SharedItem(row["id"], row["room_id"], row["created_at"], row["kind"], author, json.loads(row["data"]))
