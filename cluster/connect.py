"""Redis clients for cluster mode, with short timeouts: an unreachable Redis must fail a request in about a
second, never hang it (redis-py would otherwise retry with back-off). A failed connection is retried once, at
once, on a fresh one (``records_client.STALE_RETRY``)."""

from __future__ import annotations

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from . import records_client
from .bus import POLL
from .records_client import STALE_RETRY, RecordsRedis

CONNECT_TIMEOUT = 1.0
COMMAND_TIMEOUT = 2.0


def connect(url: str) -> tuple[Redis, Redis]:
    """A client for commands and scripts, and one for blocking reads (BLPOP), whose reads may last ``POLL``."""
    common = {"socket_connect_timeout": CONNECT_TIMEOUT, "retry": Retry(NoBackoff(), 1, STALE_RETRY)}
    return (Redis.from_url(url, socket_timeout=COMMAND_TIMEOUT, **common),
            Redis.from_url(url, socket_timeout=POLL + COMMAND_TIMEOUT, **common))


def connect_records(url: str) -> RecordsRedis:
    """A blocking client for the durable records (consult log, link tests, link samples, audit...): they sit behind
    the same synchronous interfaces as the embedded SQLite store, and each write is one round trip (MULTI/EXEC).
    The same short timeouts, and a breaker (``records_client``): a Redis that hangs holds the event loop for one
    timeout, then fails commands at once for a while."""
    return records_client.connect_records(url, CONNECT_TIMEOUT, COMMAND_TIMEOUT)
