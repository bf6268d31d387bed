"""Shared fixtures: a real Hoichan server in a subprocess."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from support import Server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("server"))
    srv.start()
    yield srv
    srv.stop()
    assert srv.proc is not None and srv.proc.returncode in (0, -15), srv.log.read_text()


