"""TURN REST credentials: the formula, and a real coturn (use-auth-secret) that accepts them until they expire."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
from pathlib import Path

import pytest
from aioice import turn as aioice_turn
from aioice import stun
from turn_support import SECRET, TurnServer, needs_turnserver

from signaling.config import TurnConfig
from signaling.turn import credentials, ice_servers_by_path, path_of


def test_credentials_follow_the_turn_rest_scheme() -> None:
    username, password = credentials("s3cret-for-the-turn-server", "ktv.lan", 3600, now=1_700_000_000)
    assert username == "1700003600:ktv.lan"
    digest = hmac.new(b"s3cret-for-the-turn-server", b"1700003600:ktv.lan", hashlib.sha1).digest()
    assert password == base64.b64encode(digest).decode()
    assert credentials("s3cret-for-the-turn-server", "a:b", 60, now=0)[0] == "60:a_b"  # ':' separates the expiry


def test_each_path_gets_its_own_uri() -> None:
    config = TurnConfig(urls=("turn:t.example.org:3478?transport=udp", "turn:t.example.org:3478?transport=tcp",
                              "turns:t.example.org:443?transport=tcp", "turn:t.example.org"), secret=SECRET)
    servers = ice_servers_by_path(config, "ktv.lan", now=1000)
    assert servers["turn-udp"]["urls"] == ["turn:t.example.org:3478?transport=udp"]  # the first URI of a path wins
    assert servers["turn-tcp"]["urls"] == ["turn:t.example.org:3478?transport=tcp"]
    assert servers["turn-tls"]["urls"] == ["turns:t.example.org:443?transport=tcp"]
    assert servers["turn-udp"]["username"] == "4600:ktv.lan"
    assert path_of("turn:x") == "turn-udp" and path_of("turns:x") == "turn-tls"
    assert ice_servers_by_path(TurnConfig(), "ktv.lan") == {}


@pytest.fixture(scope="module")
def turn(tmp_path_factory: pytest.TempPathFactory) -> TurnServer:
    if not Path("/usr/bin/turnserver").exists():
        pytest.skip("coturn's turnserver is not installed")
    server = TurnServer(tmp_path_factory.mktemp("turn"))
    server.start()
    yield server  # type: ignore[misc]
    server.stop()


async def allocate(turn: TurnServer, username: str, password: str) -> tuple[str, int]:
    """A relayed address from coturn, over UDP (aioice's TURN client, the one aiortc peers use)."""
    transport, _ = await aioice_turn.create_turn_endpoint(
        asyncio.DatagramProtocol, ("127.0.0.1", turn.port), username, password, transport="udp",
    )
    try:
        return transport.get_extra_info("sockname")
    finally:
        transport.close()


@needs_turnserver
async def test_coturn_accepts_fresh_credentials_and_refuses_expired_or_forged_ones(turn: TurnServer) -> None:
    relayed = await allocate(turn, *credentials(SECRET, "ktv.lan", 600))
    assert relayed[0] == "127.0.0.1" and relayed[1] > 0
    for username, password in (credentials(SECRET, "ktv.lan", -60),  # expired a minute ago
                               credentials("another-secret-entirely-0000", "ktv.lan", 600)):
        with pytest.raises(stun.TransactionFailed):
            await allocate(turn, username, password)
