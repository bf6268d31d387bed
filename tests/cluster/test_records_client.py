"""The durable records' Redis client: a Redis that hangs holds the caller for one timeout, then commands fail at
once while the breaker is open, longer while the failures go on; the first command after a pause tries again, and
a success closes the breaker."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest
import redis
from cluster_support import SHARED_REDIS, needs_redis

from cluster.records_client import Breaker, connect_records


@pytest.fixture
def hung() -> Iterator[int]:
    """A port where TCP connections are taken (the kernel's backlog) and never answered: a stopped Redis."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield listener.getsockname()[1]


def timed(call: object) -> tuple[type[BaseException], float]:
    started = time.monotonic()
    with pytest.raises(redis.RedisError) as caught:
        call()  # type: ignore[operator]
    return caught.type, time.monotonic() - started


def test_a_hung_redis_costs_one_timeout_then_commands_fail_at_once(hung: int) -> None:
    client = connect_records(f"redis://127.0.0.1:{hung}/0", connect_timeout=1.0, command_timeout=0.4)
    client.breaker = Breaker(first_pause=0.5, max_pause=1.0)
    kind, took = timed(lambda: client.get("x"))
    assert kind is redis.TimeoutError and 0.35 <= took < 1.5, took
    for command in (lambda: client.get("x"), lambda: client.pipeline().set("x", 1).execute()):
        kind, took = timed(command)
        assert kind is redis.ConnectionError and took < 0.1, took  # the breaker is open: no waiting
    time.sleep(0.55)
    kind, took = timed(lambda: client.get("x"))  # tried again, failed again: the pause doubles
    assert kind is redis.TimeoutError and took >= 0.35
    time.sleep(0.55)
    assert timed(lambda: client.get("x"))[1] < 0.1  # still open after the first pause's length
    time.sleep(0.5)
    assert timed(lambda: client.get("x"))[0] is redis.TimeoutError  # the doubled pause is over
    client.close()


@needs_redis
def test_a_success_after_the_pause_closes_the_breaker() -> None:
    client = connect_records(f"redis://{SHARED_REDIS[0]}:{SHARED_REDIS[1]}/0", 1.0, 2.0)
    client.breaker = Breaker(first_pause=0.3, max_pause=1.0)

    def refused() -> None:
        raise redis.ConnectionError("refused")

    with pytest.raises(redis.ConnectionError):
        client.breaker.call(refused)
    with pytest.raises(redis.ConnectionError, match="next try"):
        client.ping()
    time.sleep(0.35)
    assert client.ping() is True
    with pytest.raises(redis.ConnectionError):
        client.breaker.call(refused)
    with pytest.raises(redis.ConnectionError, match="next try in 0.[0-3]"):  # the first pause again, not doubled
        client.ping()
    client.close()
