"""The embedded store's file: created owner-only, and safe to open twice in one process."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

from signaling.store import DATABASE_NAME, connect


def test_created_readable_by_its_owner_only(tmp_path: Path) -> None:
    connect(tmp_path / "store")
    assert stat.S_IMODE((tmp_path / "store" / DATABASE_NAME).stat().st_mode) == 0o600


def test_a_second_connection_does_not_blind_the_first(tmp_path: Path) -> None:
    """The server opens the store for accounts and again for dispatch; the CLI writes from another process.

    Opening must not close a descriptor of a file this process already has open: that drops SQLite's POSIX locks,
    and the first connection then keeps reading a stale snapshot (a changed password would not sign anyone out).
    """
    first = connect(tmp_path)
    first.execute("CREATE TABLE t (v INTEGER)")
    first.execute("INSERT INTO t VALUES (0)")
    connect(tmp_path)
    writer = (
        "import sqlite3, sys; db = sqlite3.connect(sys.argv[1], isolation_level=None); "
        "db.execute('PRAGMA journal_mode=WAL'); db.execute('UPDATE t SET v = v + 1'); db.close()"
    )
    for expected in (1, 2, 3):  # as the CLI would: each run opens, writes and closes
        subprocess.run([sys.executable, "-c", writer, str(tmp_path / DATABASE_NAME)], check=True, timeout=30)
        assert first.execute("SELECT v FROM t").fetchone()[0] == expected
