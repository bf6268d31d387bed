"""The embedded store: one SQLite database under ``store.path`` for state that must survive a restart.

Why SQLite: the server and the ``hoichan`` CLI write it at the same time (an admin adds an account while
consultations run), and SQLite gives both processes atomic, durable transactions and locking with nothing to
install. Each module owns its tables and creates them itself (``CREATE TABLE IF NOT EXISTS``); this module only
opens the file the same way for everyone.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["DATABASE_NAME", "connect", "transaction"]

DATABASE_NAME = "hoichan.sqlite3"
_BUSY_TIMEOUT_MS = 5000


def connect(store_path: Path) -> sqlite3.Connection:
    """Open (creating if needed) ``<store_path>/hoichan.sqlite3``, readable by its owner only (it holds password hashes).

    Autocommit mode: each statement is its own transaction unless wrapped in ``transaction()``. WAL lets the
    server read while the CLI writes; the busy timeout makes a writer wait for the other instead of failing.
    """
    store_path.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = store_path / DATABASE_NAME
    try:  # create with the right mode, never briefly world-readable
        os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        # Never open and close an existing database file: closing any descriptor of a file drops every POSIX lock
        # this process holds on it, so another connection of this process would lose its locks, and a writer in
        # another process (the CLI) could then checkpoint and reset the WAL under it: it would read stale data.
        pass
    db = sqlite3.connect(path, isolation_level=None, timeout=_BUSY_TIMEOUT_MS / 1000)
    db.row_factory = sqlite3.Row
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA foreign_keys=ON")
    db.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
    return db


@contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """Several statements as one: all or nothing, and no other process writes in between (``BEGIN IMMEDIATE``)."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
