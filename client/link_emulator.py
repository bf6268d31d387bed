"""A bad network in user space: a UDP relay between a test peer and the server that adds delay, jitter, random
loss and a rate limit, per direction, changeable while it runs, with counters that are the ground truth.

These machines have no ``tc netem``, and a test of link quality needs a link whose faults are known exactly. The
emulator stands where a site's router would: the peer is told (by rewriting the server's offer) that the server's
candidates are the relay's own addresses, and its own candidates are removed from its answer, so the server learns
the relay's server-facing address as a peer-reflexive candidate from the STUN checks. Every packet, STUN, DTLS,
RTP and SCTP alike, then crosses the relay.

Each direction is one link, modelled in the order a real access link applies its faults::

    random loss  →  token bucket (rate, burst) with a drop-tail queue  →  delay ± jitter  →  delivery

Jitter is uniform in ``delay ± jitter`` and never reorders packets (a packet leaves no earlier than the one before
it), as on one physical path. ``up`` is peer → server, ``down`` is server → peer.
"""

from __future__ import annotations

import asyncio
import random
import re
import socket
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

Address = tuple[str, int]

RECV_BUFFER = 65536
MAX_READS_PER_WAKEUP = 64  # packets read per readiness callback, so one busy socket cannot starve the loop


@dataclass(frozen=True)
class Impairment:
    """What one direction of the link does to packets. Every field may change while packets flow."""

    delay_ms: float = 0.0
    """One-way delay added to every packet."""
    jitter_ms: float = 0.0
    """Each packet's delay is drawn uniformly from ``delay_ms ± jitter_ms`` (never below zero, never reordering)."""
    loss: float = 0.0
    """Probability (0..1) that a packet is dropped at random; 1.0 is a cut link."""
    rate_kbps: float | None = None
    """Link rate in kbit/s (IP payload bytes, as UDP carries them); None = unlimited."""
    queue_ms: float = 300.0
    """Drop-tail limit of the rate limiter's queue, as time at ``rate_kbps`` (300 ms ≈ a modest modem buffer)."""
    burst_bytes: int = 3000
    """Token bucket depth: bytes that may leave back to back after an idle spell."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.loss <= 1.0:
            raise ValueError(f"loss must be within 0..1 (got {self.loss})")
        if self.delay_ms < 0 or self.jitter_ms < 0 or self.queue_ms < 0:
            raise ValueError("delay_ms, jitter_ms and queue_ms must be ≥ 0")
        if self.rate_kbps is not None and self.rate_kbps <= 0:
            raise ValueError(f"rate_kbps must be > 0 or None (got {self.rate_kbps})")
        if self.burst_bytes < 1500:
            raise ValueError(f"burst_bytes must hold one full packet, ≥ 1500 (got {self.burst_bytes})")

    @property
    def queue_limit_bytes(self) -> int | None:
        """The queue's capacity in bytes (at least one full packet), None when the rate is unlimited."""
        if self.rate_kbps is None:
            return None
        return max(int(self.rate_kbps * 1000 / 8 * self.queue_ms / 1000), 1500)


@dataclass
class Counters:
    """What happened to the packets offered to one direction (the ground truth a measurement is checked against)."""

    packets_in: int = 0
    bytes_in: int = 0
    lost: int = 0
    """Dropped at random (``loss``)."""
    queue_drops: int = 0
    """Dropped because the rate limiter's queue was full."""
    delivered: int = 0
    bytes_delivered: int = 0
    send_errors: int = 0
    """Delivered by the emulator but refused by the operating system (a full socket buffer)."""
    delay_total_ms: float = 0.0
    """Sum over delivered packets of the time spent in the emulator (queue wait + delay + jitter)."""

    @property
    def mean_delay_ms(self) -> float | None:
        return self.delay_total_ms / self.delivered if self.delivered else None

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "mean_delay_ms": self.mean_delay_ms}


Deliver = Callable[[bytes], None]


class Direction:
    """One direction of the emulated link: its impairment, its queue and its counters."""

    def __init__(self, name: str, impairment: Impairment, rng: random.Random) -> None:
        self.name = name
        self.counters = Counters()
        self._impairment = impairment
        self._rng = rng
        self._queue: deque[tuple[bytes, Deliver, float]] = deque()  # (packet, where to, when it arrived)
        self._queued_bytes = 0
        self._tokens = float(impairment.burst_bytes)
        self._tokens_at = 0.0
        self._drain: asyncio.TimerHandle | None = None
        self._last_delivery = 0.0
        self._in_flight: deque[tuple[float, bytes, Deliver, float]] = deque()  # (when it lands, packet, to, arrived)
        self._flight_timer: asyncio.TimerHandle | None = None

    @property
    def impairment(self) -> Impairment:
        return self._impairment

    def set(self, impairment: Impairment | None = None, **changes: Any) -> Impairment:
        """Change the impairment now (a whole new one, or some fields); packets already queued keep their place."""
        loop = asyncio.get_running_loop()
        self._refill(loop.time())
        self._impairment = replace(impairment or self._impairment, **changes)
        self._tokens = min(self._tokens, float(self._impairment.burst_bytes))
        self._schedule_drain(loop)
        return self._impairment

    def reset_counters(self) -> Counters:
        """Start counting afresh; returns the counters up to now."""
        previous, self.counters = self.counters, Counters()
        return previous

    def submit(self, data: bytes, deliver: Deliver) -> None:
        """Offer one packet to the link; ``deliver`` sends it on if and when it comes out."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        imp = self._impairment
        c = self.counters
        c.packets_in += 1
        c.bytes_in += len(data)
        if imp.loss and self._rng.random() < imp.loss:
            c.lost += 1
            return
        if imp.rate_kbps is None and not self._queue:
            self._propagate(data, deliver, now, loop)
            return
        self._refill(now)
        if not self._queue and self._tokens >= len(data):
            self._tokens -= len(data)
            self._propagate(data, deliver, now, loop)
            return
        limit = imp.queue_limit_bytes
        if limit is not None and self._queued_bytes + len(data) > limit:
            c.queue_drops += 1
            return
        self._queue.append((data, deliver, now))
        self._queued_bytes += len(data)
        self._schedule_drain(loop)

    def close(self) -> None:
        for timer in (self._drain, self._flight_timer):
            if timer is not None:
                timer.cancel()
        self._drain = self._flight_timer = None
        self._in_flight.clear()
        self._queue.clear()
        self._queued_bytes = 0

    # -- internals -------------------------------------------------------------------------------------

    def _refill(self, now: float) -> None:
        rate = self._impairment.rate_kbps
        if rate is not None and self._tokens_at:
            self._tokens = min(self._tokens + (now - self._tokens_at) * rate * 125, self._impairment.burst_bytes)
        self._tokens_at = now

    def _schedule_drain(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._drain is not None:
            self._drain.cancel()
            self._drain = None
        if not self._queue:
            return
        rate = self._impairment.rate_kbps
        if rate is None:
            self._drain = loop.call_soon(self._run_drain)
            return
        missing = len(self._queue[0][0]) - self._tokens
        self._drain = loop.call_at(loop.time() + max(missing, 0.0) / (rate * 125), self._run_drain)

    def _run_drain(self) -> None:
        self._drain = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        self._refill(now)
        unlimited = self._impairment.rate_kbps is None
        while self._queue and (unlimited or self._tokens >= len(self._queue[0][0])):
            data, deliver, arrived = self._queue.popleft()
            self._queued_bytes -= len(data)
            if not unlimited:
                self._tokens -= len(data)
            self._propagate(data, deliver, arrived, loop)
        self._schedule_drain(loop)

    def _propagate(self, data: bytes, deliver: Deliver, arrived: float, loop: asyncio.AbstractEventLoop) -> None:
        imp = self._impairment
        now = loop.time()
        delay = imp.delay_ms
        if imp.jitter_ms:
            delay = max(delay + self._rng.uniform(-imp.jitter_ms, imp.jitter_ms), 0.0)
        at = max(now + delay / 1000, self._last_delivery)  # one path: no overtaking
        self._last_delivery = at
        if at <= now and not self._in_flight:
            self._deliver(data, deliver, arrived, now)
            return
        # delivery times never decrease, so packets in flight are a FIFO behind one timer (equal timer deadlines
        # would not keep their order in the event loop's heap)
        self._in_flight.append((at, data, deliver, arrived))
        if self._flight_timer is None:
            self._flight_timer = loop.call_at(at, self._land)

    def _land(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        while self._in_flight and self._in_flight[0][0] <= now:
            _, data, deliver, arrived = self._in_flight.popleft()
            self._deliver(data, deliver, arrived, now)
        self._flight_timer = loop.call_at(self._in_flight[0][0], self._land) if self._in_flight else None

    def _deliver(self, data: bytes, deliver: Deliver, arrived: float, now: float) -> None:
        c = self.counters
        try:
            deliver(data)
        except OSError:
            c.send_errors += 1
            return
        c.delivered += 1
        c.bytes_delivered += len(data)
        c.delay_total_ms += (now - arrived) * 1000


class _Socket:
    """A non-blocking UDP socket read from the event loop's readiness callbacks (set up synchronously)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, bind: Address, on_datagram: Callable[[bytes, Address], None]):
        family = socket.AF_INET6 if ":" in bind[0] else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        self.sock.bind(bind)
        self.address: Address = self.sock.getsockname()[:2]
        self._loop = loop
        self._on_datagram = on_datagram
        loop.add_reader(self.sock.fileno(), self._readable)

    def _readable(self) -> None:
        for _ in range(MAX_READS_PER_WAKEUP):
            try:
                data, addr = self.sock.recvfrom(RECV_BUFFER)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # e.g. ICMP port unreachable reported on the next read: not ours to act on
                continue
            self._on_datagram(data, addr[:2])

    def sendto(self, data: bytes, addr: Address) -> None:
        try:
            self.sock.sendto(data, addr)
        except (BlockingIOError, InterruptedError) as exc:
            raise OSError("socket buffer full") from exc

    def close(self) -> None:
        self._loop.remove_reader(self.sock.fileno())
        self.sock.close()


class _Pipe:
    """The relay's stand-in for one server candidate: a peer-facing socket, and one server-facing socket per peer
    source address (like a NAT's mapping), so each peer candidate looks like its own peer-reflexive one."""

    def __init__(self, emulator: LinkEmulator, server: Address) -> None:
        self.server = server
        self._emulator = emulator
        self._loop = asyncio.get_running_loop()
        self.front = _Socket(self._loop, (emulator.host, 0), self._from_peer)
        self.mappings: dict[Address, _Socket] = {}

    def _from_peer(self, data: bytes, peer: Address) -> None:
        back = self.mappings.get(peer)
        if back is None:
            upstream_host = "::" if ":" in self.server[0] else "0.0.0.0"
            back = _Socket(self._loop, (upstream_host, 0), lambda d, _a, peer=peer: self._from_server(d, peer))
            self.mappings[peer] = back
        self._emulator.up.submit(data, lambda d: back.sendto(d, self.server))

    def _from_server(self, data: bytes, peer: Address) -> None:
        self._emulator.down.submit(data, lambda d: self.front.sendto(d, peer))

    def close(self) -> None:
        self.front.close()
        for back in self.mappings.values():
            back.close()
        self.mappings.clear()


_CANDIDATE = re.compile(r"^a=candidate:(\S+) (\d+) (\S+) (\d+) (\S+) (\d+) typ (\S+)(.*)$")


class LinkEmulator:
    """The relay. Use as ``async with LinkEmulator(up=Impairment(loss=0.1)) as link: ...`` or ``close()`` it."""

    def __init__(
        self,
        up: Impairment | None = None,
        down: Impairment | None = None,
        host: str = "127.0.0.1",
        seed: int | None = None,
    ) -> None:
        """``host``: the address the peer sends to (the relay's peer-facing sockets bind there); ``seed``: make
        random loss and jitter repeatable."""
        rng = random.Random(seed)
        self.host = host
        self.up = Direction("up", up or Impairment(), random.Random(rng.random()))
        self.down = Direction("down", down or Impairment(), random.Random(rng.random()))
        self._pipes: dict[Address, _Pipe] = {}

    async def __aenter__(self) -> LinkEmulator:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def route(self, server: Address) -> Address:
        """The relay address that stands for ``server`` (a UDP candidate of the server); created on first use."""
        pipe = self._pipes.get(server)
        if pipe is None:
            pipe = self._pipes[server] = _Pipe(self, server)
        return pipe.front.address

    def set(self, up: Impairment | None = None, down: Impairment | None = None) -> None:
        """Change both directions at once (None leaves a direction as it is)."""
        if up is not None:
            self.up.set(up)
        if down is not None:
            self.down.set(down)

    def rewrite_server_sdp(self, sdp: str) -> str:
        """The server's SDP as the peer must see it: every UDP candidate replaced by its relay address, every other
        candidate (TCP) removed, so no packet can bypass the relay."""
        lines = []
        for line in sdp.splitlines():
            match = _CANDIDATE.match(line)
            if match is not None:
                foundation, component, transport, priority, host, port, typ, _rest = match.groups()
                if transport.lower() != "udp":
                    continue
                relay_host, relay_port = self.route((host, int(port)))
                line = f"a=candidate:{foundation} {component} udp {priority} {relay_host} {relay_port} typ host"
            lines.append(line)
        return "\r\n".join(lines) + "\r\n"

    @staticmethod
    def strip_candidates(sdp: str) -> str:
        """The peer's SDP without its candidates nor end-of-candidates: the server must learn the peer's address
        from the checks arriving through the relay (and keep waiting for them)."""
        kept = [line for line in sdp.splitlines() if not line.startswith(("a=candidate:", "a=end-of-candidates"))]
        return "\r\n".join(kept) + "\r\n"

    def stats(self) -> dict[str, Any]:
        return {"up": self.up.counters.as_dict(), "down": self.down.counters.as_dict()}

    def close(self) -> None:
        self.up.close()
        self.down.close()
        for pipe in self._pipes.values():
            pipe.close()
        self._pipes.clear()
