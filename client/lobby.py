"""A headless lobby page: one socket.io connection signed in as an account, as the lobby page keeps one.

Keeps what the server pushes (consult states, invitations, presence, errors) with the monotonic time each arrived,
so tests and the benchmark can measure how long a ring took to reach a central doctor.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import socketio

__all__ = ["LobbyClient", "Received"]


@dataclass(frozen=True)
class Received:
    at: float
    """time.monotonic() on arrival."""
    payload: dict[str, Any]


class LobbyClient:
    def __init__(self, url: str, token: str | None, username: str | None = None) -> None:
        self.url = url
        self.token = token
        self.username = username
        self.sio = socketio.AsyncClient(reconnection=False)
        self.states: list[Received] = []
        self.invitations: list[Received] = []
        self.presence: list[Received] = []
        self.duty: list[Received] = []
        self.errors: list[dict[str, Any]] = []
        self._changed = asyncio.Event()
        self.sio.on("consult-state", lambda p: self._keep(self.states, p))
        self.sio.on("consult-invited", lambda p: self._keep(self.invitations, p))
        self.sio.on("presence", lambda p: self._keep(self.presence, p))
        self.sio.on("duty", lambda p: self._keep(self.duty, p))
        self.sio.on("error", self.errors.append)

    def _keep(self, into: list[Received], payload: dict[str, Any]) -> None:
        into.append(Received(time.monotonic(), payload))
        self._changed.set()

    async def connect(self, timeout: float = 10) -> LobbyClient:
        auth = {"token": self.token} if self.token else None
        await self.sio.connect(self.url, transports=["websocket"], auth=auth, wait_timeout=timeout)
        return self

    async def call(self, event: str, payload: dict[str, Any] | None = None, timeout: float = 10) -> dict[str, Any]:
        return await self.sio.call(event, payload or {}, timeout=timeout)  # type: ignore[no-any-return]

    async def enter(self, point: str | None = None, on_duty: bool | None = None) -> dict[str, Any]:
        """Open the lobby (at ``point``), optionally going on or off duty; the ``lobby-enter`` answer."""
        answer = await self.call("lobby-enter", {"point": point} if point else {})
        if on_duty is not None:
            duty = await self.call("duty", {"onDuty": on_duty})
            assert duty.get("ok"), duty
        return answer

    def latest(self, consult_id: str) -> dict[str, Any] | None:
        """The last state of ``consult_id`` this page was sent."""
        for received in reversed(self.states):
            if received.payload["id"] == consult_id:
                return received.payload
        return None

    def my_ring(self, consult_id: str) -> dict[str, Any] | None:
        state = self.latest(consult_id)
        if state is None:
            return None
        return next((r for r in state["rings"] if r["username"] == self.username), None)

    async def wait(self, predicate: Any, timeout: float = 10) -> None:
        """Until ``predicate()`` holds (re-checked on every push); ``TimeoutError`` otherwise."""
        deadline = time.monotonic() + timeout
        while not predicate():
            self._changed.clear()
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("condition not met")
            try:
                await asyncio.wait_for(self._changed.wait(), min(left, 0.25))
            except TimeoutError:
                pass

    async def close(self) -> None:
        await self.sio.disconnect()
