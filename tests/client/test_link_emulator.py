"""The link emulator on plain UDP sockets: what arrives at the other end matches what it was told to impose."""

from __future__ import annotations

import asyncio
import statistics
import struct
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from client.link_emulator import Impairment, LinkEmulator

HEADER = struct.Struct("!Id")  # sequence number, send time (monotonic: sender and receiver share this clock)


@dataclass
class Endpoint(asyncio.DatagramProtocol):
    """A UDP socket that notes every arrival: (sequence, one-way delay in ms, size, arrival time)."""

    echo: bool = False
    arrivals: list[tuple[int, float, int, float]] = field(default_factory=list)
    transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        now = time.monotonic()
        seq, sent = HEADER.unpack_from(data)
        self.arrivals.append((seq, (now - sent) * 1000, len(data), now))
        if self.echo:
            assert self.transport is not None
            self.transport.sendto(data, addr)

    @property
    def address(self) -> tuple[str, int]:
        assert self.transport is not None
        return self.transport.get_extra_info("sockname")[:2]


async def endpoint(echo: bool = False) -> Endpoint:
    loop = asyncio.get_running_loop()
    _, protocol = await loop.create_datagram_endpoint(lambda: Endpoint(echo=echo), local_addr=("127.0.0.1", 0))
    return protocol


def packet(seq: int, size: int = 200) -> bytes:
    return HEADER.pack(seq, time.monotonic()) + bytes(size - HEADER.size)


async def send_paced(peer: Endpoint, to: tuple[str, int], count: int, interval: float, size: int = 200) -> None:
    """``count`` packets, one every ``interval`` seconds on a fixed schedule (no drift under load)."""
    assert peer.transport is not None
    start = time.monotonic()
    for seq in range(count):
        await asyncio.sleep(max(0.0, start + seq * interval - time.monotonic()))
        peer.transport.sendto(packet(seq, size), to)


class LoopLag:
    """How late this event loop runs its timers: a busy machine delays the emulator's timers as much, so timing
    bounds add what was seen here (about 0-2 ms on an idle machine, so they stay strict there)."""

    def __init__(self) -> None:
        self.worst_ms = 0.0
        self._task = asyncio.ensure_future(self._watch())

    async def _watch(self) -> None:
        while True:
            start = time.monotonic()
            await asyncio.sleep(0.005)
            self.worst_ms = max(self.worst_ms, (time.monotonic() - start - 0.005) * 1000)

    def close(self) -> None:
        self._task.cancel()


@pytest.fixture
async def lag() -> AsyncIterator[LoopLag]:
    watch = LoopLag()
    yield watch
    watch.close()


@pytest.fixture
async def link() -> AsyncIterator[tuple[LinkEmulator, Endpoint, Endpoint, tuple[str, int]]]:
    """(emulator, peer, server, relay address standing for the server); the server echoes every packet."""
    server, peer = await endpoint(echo=True), await endpoint()
    emulator = LinkEmulator(seed=7)
    yield emulator, peer, server, emulator.route(server.address)
    emulator.close()
    for e in (server, peer):
        assert e.transport is not None
        e.transport.close()


async def test_delay_and_jitter_arrive_as_imposed(
    link: tuple[LinkEmulator, Endpoint, Endpoint, tuple[str, int]], lag: LoopLag
) -> None:
    emulator, peer, server, relay = link
    emulator.set(up=Impairment(delay_ms=80), down=Impairment(delay_ms=30, jitter_ms=10))
    await send_paced(peer, relay, 100, 0.01)
    await asyncio.sleep(0.3)
    one_way = [d for _, d, _, _ in server.arrivals]
    assert len(one_way) == 100
    assert min(one_way) >= 80 - 1 and statistics.mean(one_way) == pytest.approx(80, abs=8)
    round_trip = [d for _, d, _, _ in peer.arrivals]
    assert len(round_trip) == 100
    # down: 30 ± 10 ms uniform, order kept (a packet may wait behind a slower one, never overtake it)
    assert statistics.mean(round_trip) == pytest.approx(110, abs=10)
    assert min(round_trip) >= 80 + 20 - 1
    assert 8 < max(round_trip) - min(round_trip) < 20 + 15 + lag.worst_ms
    assert [seq for seq, _, _, _ in peer.arrivals] == list(range(100))
    assert emulator.up.counters.delivered == emulator.down.counters.delivered == 100
    assert emulator.up.counters.mean_delay_ms == pytest.approx(80, abs=3)


async def test_random_loss_matches_the_setting_and_the_counters(
    link: tuple[LinkEmulator, Endpoint, Endpoint, tuple[str, int]],
) -> None:
    emulator, peer, server, relay = link
    emulator.up.set(loss=0.10)
    await send_paced(peer, relay, 2000, 0.0005)
    await asyncio.sleep(0.3)
    up = emulator.up.counters
    assert up.packets_in == 2000
    assert len(server.arrivals) == up.delivered == 2000 - up.lost
    assert up.lost / 2000 == pytest.approx(0.10, abs=0.02)  # 3 standard deviations of a binomial at n = 2000
    assert emulator.down.counters.lost == 0 and len(peer.arrivals) == len(server.arrivals)


async def test_rate_limit_caps_throughput_and_its_queue_drops_the_tail(
    link: tuple[LinkEmulator, Endpoint, Endpoint, tuple[str, int]], lag: LoopLag
) -> None:
    emulator, peer, server, relay = link
    emulator.up.set(rate_kbps=512, queue_ms=200)
    await send_paced(peer, relay, 384, 1 / 128, size=1000)  # 1024 kbit/s offered for 3 s: twice the rate
    await asyncio.sleep(0.4)
    arrivals = server.arrivals
    steady = [a for a in arrivals if a[3] - arrivals[0][3] >= 0.5]  # after the queue has filled
    kbps = sum(size for *_, size, _ in steady[1:]) * 8 / 1000 / (steady[-1][3] - steady[0][3])
    assert kbps == pytest.approx(512, rel=0.10)  # (a loaded machine measured 484: its clock ticks late)
    up = emulator.up.counters
    assert up.queue_drops > 100 and up.delivered + up.queue_drops == 384
    # a full queue holds 200 ms at 512 kbit/s: packets do not wait (much) longer; a percentile, since a busy
    # machine can stall the event loop for a few tens of milliseconds now and then
    delays = sorted(d for _, d, _, _ in arrivals)
    assert delays[int(0.95 * len(delays))] < 200 + 25 + lag.worst_ms
    assert max(d for _, d, _, _ in arrivals[-20:]) > 150  # and a standing queue does build up


async def test_a_rate_below_the_offered_load_without_overflow_delivers_everything(
    link: tuple[LinkEmulator, Endpoint, Endpoint, tuple[str, int]],
) -> None:
    emulator, peer, server, relay = link
    emulator.down.set(rate_kbps=2000)
    await send_paced(peer, relay, 200, 1 / 100, size=1200)  # 960 kbit/s through a 2000 kbit/s link
    await asyncio.sleep(0.2)
    assert len(peer.arrivals) == 200 and emulator.down.counters.queue_drops == 0


async def test_impairments_change_while_packets_flow(
    link: tuple[LinkEmulator, Endpoint, Endpoint, tuple[str, int]],
) -> None:
    emulator, peer, server, relay = link
    sending = asyncio.ensure_future(send_paced(peer, relay, 300, 0.01))  # 3 s
    await asyncio.sleep(1.0)
    emulator.up.set(loss=1.0)  # a 1 s outage
    cut_at = time.monotonic()
    await asyncio.sleep(1.0)
    emulator.up.set(loss=0.0)
    back_at = time.monotonic()
    await sending
    await asyncio.sleep(0.2)
    during = [a for a in server.arrivals if cut_at + 0.005 < a[3] < back_at]
    assert during == []
    assert len([a for a in server.arrivals if a[3] < cut_at]) >= 80
    assert len([a for a in server.arrivals if a[3] > back_at]) >= 80
    assert emulator.up.counters.lost == pytest.approx(100, abs=10)


def test_impairment_refuses_nonsense() -> None:
    for bad in ({"loss": 1.5}, {"loss": -0.1}, {"delay_ms": -1}, {"rate_kbps": 0}, {"burst_bytes": 100}):
        with pytest.raises(ValueError):
            Impairment(**bad)  # type: ignore[arg-type]
    assert Impairment(rate_kbps=800, queue_ms=100).queue_limit_bytes == 10_000
    assert Impairment().queue_limit_bytes is None


OFFER = "\r\n".join([
    "v=0", "o=- 1 1 IN IP4 0.0.0.0", "s=-", "t=0 0", "a=group:BUNDLE 0",
    "m=audio 40000 UDP/TLS/RTP/SAVPF 96", "c=IN IP4 127.0.0.1",
    "a=candidate:1 1 udp 2130706431 127.0.0.1 40000 typ host",
    "a=candidate:2 1 udp 1694498815 198.51.100.7 40001 typ srflx raddr 127.0.0.1 rport 40000",
    "a=candidate:3 1 tcp 1518280447 127.0.0.1 9 typ host tcptype active",
    "a=end-of-candidates", "a=mid:0", "",
])


async def test_sdp_rewriting_sends_everything_through_the_relay() -> None:
    async with LinkEmulator() as emulator:
        rewritten = emulator.rewrite_server_sdp(OFFER)
        first, second = emulator.route(("127.0.0.1", 40000)), emulator.route(("198.51.100.7", 40001))
        assert first != second
        candidates = [line for line in rewritten.splitlines() if line.startswith("a=candidate:")]
        assert candidates == [
            f"a=candidate:1 1 udp 2130706431 {first[0]} {first[1]} typ host",
            f"a=candidate:2 1 udp 1694498815 {second[0]} {second[1]} typ host",
        ]
        assert "a=end-of-candidates" in rewritten and "a=mid:0" in rewritten
        stripped = LinkEmulator.strip_candidates(OFFER)
        assert "a=candidate" not in stripped and "end-of-candidates" not in stripped and "a=mid:0" in stripped
