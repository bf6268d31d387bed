"""The embedded store's connections: several in one process must each see what another process writes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from signaling.store import DATABASE_NAME, connect


def write_elsewhere(path: Path, sql: str) -> None:
    """One statement from another process, as ``hoichan user ...`` does while the server runs."""
    code = f"import sqlite3; sqlite3.connect({str(path)!r}, isolation_level=None, timeout=5).execute({sql!r})"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=30)


def test_a_second_connection_does_not_blind_the_first_to_other_processes(tmp_path: Path) -> None:
    first = connect(tmp_path)
    first.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, x INTEGER)")
    second = connect(tmp_path)  # e.g. the shared-items record, opened after the accounts
    write_elsewhere(tmp_path / DATABASE_NAME, "INSERT INTO t VALUES (1, 1)")
    assert first.execute("SELECT x FROM t WHERE k = 1").fetchone()["x"] == 1
    write_elsewhere(tmp_path / DATABASE_NAME, "UPDATE t SET x = 2")
    assert first.execute("SELECT x FROM t WHERE k = 1").fetchone()["x"] == 2
    assert second.execute("SELECT x FROM t WHERE k = 1").fetchone()["x"] == 2


def test_the_database_file_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    connect(tmp_path / "store")
    assert os.stat(tmp_path / "store" / DATABASE_NAME).st_mode & 0o777 == 0o600
