"""Test helpers for cluster mode: real Redis (shared at 127.0.0.1:6379, or a private redis-server), real
signaling and media node processes (``support.Server``), keys under a per-test prefix, removed afterwards."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import socketio
from support import Server, free_port, wait_for

from cluster.connect import connect_records
from cluster.keys import Keys

SHARED_REDIS = ("127.0.0.1", 6379)


def reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


needs_redis = pytest.mark.skipif(not reachable(*SHARED_REDIS), reason="needs Redis at 127.0.0.1:6379")
needs_redis_server = pytest.mark.skipif(shutil.which("redis-server") is None,
                                        reason="needs the redis-server binary to run a private Redis")


class PrivateRedis:
    """A redis-server of the test's own that the test may stop and start again: without persistence, or with the
    append-only file docs/cluster.md asks deployments for (``aof``)."""

    def __init__(self, tmp: Path, aof: bool = False, options: tuple[str, ...] = ()) -> None:
        """``options``: more redis-server arguments (``--maxmemory``...)."""
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.tmp = tmp
        self.aof = aof
        self.options = options
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        persistence = ["--appendonly", "yes", "--appendfsync", "everysec"] if self.aof else ["--appendonly", "no"]
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", *persistence,
             "--dir", str(self.tmp), *self.options], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not reachable("127.0.0.1", self.port):
            if time.monotonic() > deadline:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


class Cluster:
    """Signaling processes and media nodes sharing one Redis under a key prefix of their own."""

    def __init__(self, tmp: Path, redis_url: str, extra: dict[str, str] | None = None) -> None:
        self.tmp = tmp
        self.redis_url = redis_url
        self.prefix = f"hoichan-test-{uuid.uuid4().hex[:8]}:"
        self.env = {
            "HOICHAN_CLUSTER__REDIS_URL": redis_url,
            "HOICHAN_CLUSTER__KEY_PREFIX": self.prefix,
            "HOICHAN_CLUSTER__HEARTBEAT_INTERVAL": "0.5",
            "HOICHAN_CLUSTER__NODE_TIMEOUT": "2",
            "HOICHAN_MEDIA__WORKERS": "1",
            "HOICHAN_RECORDING__DIRECTORY": str(tmp / "recordings"),  # shared by every node
            "HOICHAN_LOGGING__FORMAT": "json",
            **(extra or {}),
        }
        self.signaling: list[Server] = []
        self.nodes: dict[str, Server] = {}

    def add_signaling(self, env: dict[str, str] | None = None) -> Server:
        directory = self.tmp / f"signaling-{len(self.signaling)}"
        directory.mkdir()
        server = Server(directory, env={**self.env, "HOICHAN_CLUSTER__ROLE": "signaling", **(env or {})})
        server.start()
        self.signaling.append(server)
        return server

    def add_node(self, node_id: str) -> Server:
        (self.tmp / node_id).mkdir()
        server = Server(self.tmp / node_id, env={**self.env, "HOICHAN_CLUSTER__ROLE": "media",
                                                 "HOICHAN_CLUSTER__NODE_ID": node_id})
        server.start()
        self.nodes[node_id] = server
        return server

    async def registered(self, node_id: str, timeout: float = 15) -> None:
        client = self.redis()
        try:
            await wait_for(lambda: client.exists(f"{self.prefix}node:{node_id}:alive") == 1, timeout)
        finally:
            client.close()

    def redis(self) -> redis.Redis:
        return redis.Redis.from_url(self.redis_url, socket_timeout=2)

    def node_of(self, room: str) -> str | None:
        client = self.redis()
        try:
            value = client.get(f"{self.prefix}room:{room}")
            return value.decode() if value is not None else None
        finally:
            client.close()

    def stop(self) -> None:
        for server in [*self.signaling, *self.nodes.values()]:
            if server.proc is not None and server.proc.poll() is None:
                server.stop()
        try:
            client = self.redis()
            keys = list(client.scan_iter(match=self.prefix + "*", count=1000))
            if keys:
                client.delete(*keys)
            client.close()
        except redis.RedisError:
            pass


async def join_ack(url: str, room: str, timeout: float = 10) -> tuple[dict[str, Any], float]:
    """A guest's raw ``join``: the ack and how long it took."""
    client = socketio.AsyncClient(reconnection=False)
    await client.connect(url, transports=["websocket"], wait_timeout=timeout)
    try:
        started = time.monotonic()
        ack = await client.call("join", {"room": room, "name": "probe"}, timeout=timeout)
        return ack, time.monotonic() - started
    finally:
        await client.disconnect()


def json_log_entries(server: Server) -> list[dict[str, Any]]:
    """Every log line of a process as JSON (a line that is not fails the test); the start-up banner, printed for
    people, is not a log entry."""
    lines = [line for line in server.log.read_text().splitlines() if line.strip()]
    return [json.loads(line) for line in lines if not line.startswith("Hoichan")]


class Balancer:
    """A TCP load balancer in front of signaling processes: each new connection goes to the first one that accepts
    it, so a client whose process died reconnects to the next (what an HTTP balancer's health check does)."""

    def __init__(self, servers: list[Server]) -> None:
        self.servers = servers
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for server in self.servers:
            try:
                up_reader, up_writer = await asyncio.open_connection("127.0.0.1", server.port)
                break
            except OSError:
                continue
        else:
            writer.close()
            return
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.ensure_future(self._pipe(source, sink))
            self._pipes.add(task)
            task.add_done_callback(self._pipes.discard)

    @staticmethod
    async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()
        except OSError:
            pass
        finally:
            sink.close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._pipes):
            task.cancel()


class Scratch:
    """Keys under a prefix of one test's own on the shared Redis, and the blocking client the durable records use;
    ``clean`` deletes every key under the prefix."""

    def __init__(self) -> None:
        self.keys = Keys(f"hoichan-test-{uuid.uuid4().hex[:8]}:")
        self.url = f"redis://{SHARED_REDIS[0]}:{SHARED_REDIS[1]}/0"
        self.redis = connect_records(self.url)

    def clean(self) -> None:
        found = list(self.redis.scan_iter(match=self.keys.prefix + "*", count=1000))
        if found:
            self.redis.delete(*found)
        self.redis.close()


@pytest.fixture
def scratch() -> Iterator[Scratch]:
    made = Scratch()
    try:
        yield made
    finally:
        made.clean()
