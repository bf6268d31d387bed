"""A media node's liveness key, renewed from a thread of its own.

Liveness answers "is this process still there?" (a SIGKILL, a power cut), not "is its event loop quick right now?":
a node busy renegotiating a full room may hold its loop for seconds on a loaded machine, and being taken for dead
then would send all its participants to reconnect at once, on top of the load. A thread is scheduled within
milliseconds whatever the loop does (Python switches threads every 5 ms), and dies with the process. Load reports
and room placements stay on the event loop's heartbeat (``node.py``).
"""

from __future__ import annotations

import logging
import threading

import redis

from .connect import COMMAND_TIMEOUT, CONNECT_TIMEOUT

logger = logging.getLogger(__name__)


class Pulse:
    def __init__(self, url: str, key: str, incarnation: str, interval: float, timeout: float) -> None:
        self._client = redis.Redis.from_url(url, socket_connect_timeout=CONNECT_TIMEOUT,
                                            socket_timeout=COMMAND_TIMEOUT)
        self._key = key
        self._incarnation = incarnation
        self._interval = interval
        self._ttl_ms = int(timeout * 1000)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="liveness", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self._client.set(self._key, self._incarnation, px=self._ttl_ms)
            except (redis.RedisError, OSError):
                pass  # the event loop's heartbeat logs Redis outages once; this just tries again
        self._client.close()

    def stop(self) -> None:
        """Blocks until the thread ended (at most one Redis timeout): no renewal can follow a retirement."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(CONNECT_TIMEOUT + COMMAND_TIMEOUT)
