"""The blocking Redis client of the durable records, with a breaker: after Redis failed to answer, commands fail
at once for a while instead of each waiting out its timeout.

Why: the records sit behind synchronous interfaces (as the embedded SQLite store does), so a command runs in the
event loop. A Redis that refuses connections fails a command at once; a Redis that hangs (stopped, or its machine
unreachable without a reset) would hold the loop for a whole timeout on every command. After one such failure the
breaker is open for ``first_pause`` seconds (doubling while the failures go on, up to ``max_pause``), so the loop
is held for one timeout per pause at most; the first command after the pause tries Redis again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from redis import Redis
from redis.client import Pipeline
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.backoff import NoBackoff
from redis.retry import Retry

__all__ = ["Breaker", "RecordsRedis", "connect_records"]

T = TypeVar("T")

STALE_RETRY = (RedisConnectionError,)
"""What a command is retried for, once, on a fresh connection: a pooled connection that a restarted Redis closed
("Connection closed by server": a consult request failed so once Redis came back, in a CI run). Not for a timeout:
a Redis that hangs must hold a request for one timeout, not two."""


class Breaker:
    def __init__(self, first_pause: float = 1.0, max_pause: float = 8.0) -> None:
        self.first_pause, self.max_pause = first_pause, max_pause
        self._pause = 0.0
        self._until = 0.0
        self._lock = threading.Lock()

    def call(self, command: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        with self._lock:
            left = self._until - time.monotonic()
        if left > 0:
            raise RedisConnectionError(f"Redis did not answer moments ago; next try in {left:.1f} s")
        try:
            result = command(*args, **kwargs)
        except (RedisConnectionError, RedisTimeoutError):
            with self._lock:
                self._pause = min(max(self._pause * 2, self.first_pause), self.max_pause)
                self._until = time.monotonic() + self._pause
            raise
        with self._lock:
            self._pause = 0.0
        return result


class RecordsPipeline(Pipeline):
    breaker: Breaker

    def execute(self, raise_on_error: bool = True) -> list[Any]:
        return self.breaker.call(super().execute, raise_on_error)


class RecordsRedis(Redis):
    breaker: Breaker

    def execute_command(self, *args: Any, **options: Any) -> Any:
        return self.breaker.call(super().execute_command, *args, **options)

    def pipeline(self, transaction: bool = True, shard_hint: Any = None) -> RecordsPipeline:
        pipe = RecordsPipeline(self.connection_pool, self.response_callbacks, transaction, shard_hint)
        pipe.breaker = self.breaker
        return pipe


def connect_records(url: str, connect_timeout: float, command_timeout: float) -> RecordsRedis:
    """Text replies (``decode_responses``), the timeouts given, a breaker of its own, and one retry on a fresh
    connection when a connection fails (``STALE_RETRY``)."""
    client = RecordsRedis.from_url(url, socket_connect_timeout=connect_timeout, socket_timeout=command_timeout,
                                   retry=Retry(NoBackoff(), 1, STALE_RETRY), decode_responses=True)
    client.breaker = Breaker()
    return client
