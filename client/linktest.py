"""The client side of a link test, with aiortc: what ``hoichan linktest`` runs, and what tests and the benchmark drive.

``LinkTestResponder`` answers one path's offer and plays the client's part on its data channels (``media/
linktest_wire.py``): it echoes PINGs, proves with receipts which probes arrived, and sends DATA upstream at the rate
the server asks for. It measures nothing itself: the server does. ``LinkTestSession`` signs in over socket.io,
starts the test for a connection point, answers every path and waits for the verdict.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from typing import Any

import socketio
from aiortc import (
    RTCConfiguration,
    RTCIceServer,
    RTCIceTransportPolicy,
    RTCPeerConnection,
    RTCSessionDescription,
)

from media import hooks, linktest_wire as wire
from media.linktest import BACKLOG_SECONDS, OVERHEAD_BYTES, burst_bytes, data_size

from .link_emulator import LinkEmulator

logger = logging.getLogger(__name__)

Progress = Callable[[dict[str, Any]], None]


class LinkTestError(Exception):
    """The server refused or could not run the test; ``code`` is the server's error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class LinkTestResponder:
    """One path: a peer connection whose only job is to answer the server's probes."""

    def __init__(self, ice_servers: list[dict[str, Any]] | None = None, relay_only: bool = False,
                 emulator: LinkEmulator | None = None) -> None:
        servers = [RTCIceServer(**s) for s in ice_servers or []]
        policy = RTCIceTransportPolicy.RELAY if relay_only else RTCIceTransportPolicy.ALL
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=servers, iceTransportPolicy=policy))
        self.emulator = emulator
        self.ended = asyncio.Event()
        self._receipts = wire.ReceiptBook()
        self._rate = 0.0
        self._size: int | None = None  # bytes per DATA the server asked for (None: ``data_size`` of the rate)
        self._tasks: list[asyncio.Task[None]] = []

    async def answer(self, offer: str) -> str:
        if self.emulator is not None:
            offer = self.emulator.rewrite_server_sdp(offer)
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
        hooks.pace_sctp_ourselves(self.pc.sctp)  # upstream DATA paced as the server asks, as the server paces its own
        self.control = self.pc.createDataChannel("control", negotiated=True, id=wire.CONTROL_ID)
        self.probe = self.pc.createDataChannel("probe", negotiated=True, id=wire.PROBE_ID, ordered=False,
                                               maxRetransmits=0)
        self.control.on("message", self._on_control)
        self.probe.on("message", self._on_probe)
        self.control.on("open", lambda: self._tasks.append(asyncio.ensure_future(self._send_receipts())))
        self.probe.on("open", lambda: self._tasks.append(asyncio.ensure_future(self._send_data())))
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        sdp = self.pc.localDescription.sdp
        return sdp if self.emulator is None else self.emulator.strip_candidates(sdp)

    def _on_probe(self, message: Any) -> None:
        if not isinstance(message, bytes):
            return
        probe = wire.unpack(message)
        if probe is None:
            return
        kind, seq, nonce, at = probe
        if kind in (wire.PING, wire.DATA):
            self._receipts.add(seq, nonce)
        if kind == wire.PING and self.probe.readyState == "open":  # a raise here would close the connection
            self.probe.send(wire.pack(wire.PONG, seq, nonce, at, wire.PING_SIZE))

    def _on_control(self, message: Any) -> None:
        try:
            data = json.loads(message)
        except (TypeError, ValueError):
            return
        if data.get("type") == "send" and isinstance(data.get("kbps"), (int, float)):
            self._rate = max(float(data["kbps"]), 0.0)
            size = data.get("size")
            self._size = min(max(size, wire.PING_SIZE), wire.DATA_SIZE) if type(size) is int else None
        elif data.get("type") == "end":
            self._rate = 0.0
            self.ended.set()

    async def _send_receipts(self) -> None:
        while self.control.readyState == "open":
            await asyncio.sleep(wire.RECEIPT_INTERVAL)
            if self.control.readyState == "open":
                self.control.send(self._receipts.take(asyncio.get_running_loop().time() * 1000))

    async def _send_data(self) -> None:
        """DATA upstream at the rate the server asked for, paced, with little queued locally (as the server does)."""
        loop = asyncio.get_running_loop()
        seq, credit_at, sent, rate = 0, loop.time(), 0.0, 0.0
        while self.probe.readyState == "open":
            if self._rate != rate:
                rate, credit_at, sent = self._rate, loop.time(), 0.0
            if rate > 0:
                size = self._size or data_size(rate)
                budget = (loop.time() - credit_at) * rate * 125 - sent
                burst = burst_bytes(rate)
                if budget > burst:  # held back (a stalled event loop, SCTP's buffer): no catching up in one burst
                    sent += budget - burst
                    budget = burst
                backlog_limit = max(rate * 125 * BACKLOG_SECONDS, 4 * wire.DATA_SIZE)
                while budget >= size + OVERHEAD_BYTES and self.probe.bufferedAmount < backlog_limit:
                    self.probe.send(wire.pack(wire.DATA, seq, wire.rate_tag(rate), time.monotonic(), size))
                    seq += 1
                    sent += size + OVERHEAD_BYTES
                    budget -= size + OVERHEAD_BYTES
            await asyncio.sleep(0.01)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await self.pc.close()


class LinkTestSession:
    """One link test of a connection point, driven from start to verdict over socket.io."""

    def __init__(self, url: str, point: str, token: str, emulator: LinkEmulator | None = None,
                 on_progress: Progress | None = None, ssl_verify: bool = True) -> None:
        """``emulator``: route the direct UDP path through it (TURN paths go to the TURN server as they are)."""
        self.url, self.point, self.token = url, point, token
        self.emulator = emulator
        self.on_progress = on_progress
        self.sio = socketio.AsyncClient(reconnection=False, ssl_verify=ssl_verify)
        self.test_id: str | None = None
        self.responders: dict[str, LinkTestResponder] = {}
        self.result: dict[str, Any] | None = None
        self._done = asyncio.Event()
        self.sio.on("linktest-progress", self._on_progress)
        self.sio.on("linktest-result", self._on_result)
        self.sio.on("disconnect", self._on_disconnect)

    async def _on_progress(self, data: dict[str, Any]) -> None:
        if data.get("testId") == self.test_id and self.on_progress is not None:
            self.on_progress(data)

    async def _on_result(self, data: dict[str, Any]) -> None:
        if data.get("testId") == self.test_id:
            self.result = data["result"]
            self._done.set()

    async def _on_disconnect(self, *args: Any) -> None:
        self._done.set()

    async def run(self, timeout: float = 60) -> dict[str, Any]:
        """The stored result (measurements and verdict); ``LinkTestError`` if the server refused or went away."""
        try:
            await self.sio.connect(self.url, transports=["websocket"], auth={"token": self.token}, wait_timeout=10)
        except socketio.exceptions.ConnectionError as exc:
            raise LinkTestError("unavailable", f"cannot connect to {self.url}: {exc}") from None
        try:
            ack = await self.sio.call("linktest-start", {"point": self.point}, timeout=20)
            if not ack.get("ok"):
                error = ack.get("error", {})
                raise LinkTestError(error.get("code", "error"), error.get("message", "refused"))
            self.test_id = ack["testId"]
            for path in ack["paths"]:
                responder = LinkTestResponder(path.get("iceServers"), path.get("iceTransportPolicy") == "relay",
                                              self.emulator if path["path"] == "udp" else None)
                self.responders[path["path"]] = responder
                answer = await responder.answer(path["sdp"])
                reply = await self.sio.call("linktest-answer", {"testId": self.test_id, "path": path["path"],
                                                                "sdp": answer}, timeout=10)
                if not reply.get("ok"):
                    error = reply.get("error", {})
                    raise LinkTestError(error.get("code", "error"), error.get("message", "refused"))
            await asyncio.wait_for(self._done.wait(), timeout)
            if self.result is None:
                raise LinkTestError("unavailable", "the server closed the connection before the result")
            return self.result
        finally:
            await self.close()

    async def close(self) -> None:
        for responder in self.responders.values():
            await responder.close()
        if self.sio.connected:
            await self.sio.disconnect()
