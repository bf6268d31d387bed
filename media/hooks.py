"""Every place Hoichan reaches into aiortc/aioice internals, in one module.

A pass-through relay needs what aiortc does not expose: the RTP packets a receiver gets (before its jitter
buffer and decoder), and control over what a sender does on PLI/FIR and NACK and what its sender reports say.
These hooks are tied to the pinned versions below; ``tests/media/test_hooks.py`` fails loudly if an upgrade
moves any of them.
"""

from __future__ import annotations

import asyncio
import random
import time
import types
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aioice
import aioice.ice
import aiortc
from aiortc import RTCRtpReceiver, RTCRtpSender, RTCRtpTransceiver
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtcdtlstransport import State as DtlsState
from aiortc.rtp import (
    RTCP_PSFB_APP,
    HeaderExtensionsMap,
    RtcpPsfbPacket,
    RtpPacket,
    unpack_remb_fci,
)

PINNED_AIORTC = "1.16.0"
PINNED_AIOICE = "0.13.0"


class IncompatibleAiortc(RuntimeError):
    """The installed aiortc/aioice is not the one these hooks were written against."""


def check_versions() -> None:
    """Refuse to run the relay on an aiortc/aioice whose internals we have not verified."""
    found = (aiortc.__version__, aioice.__version__)
    if found != (PINNED_AIORTC, PINNED_AIOICE):
        raise IncompatibleAiortc(
            f"Hoichan's media relay needs aiortc=={PINNED_AIORTC} and aioice=={PINNED_AIOICE}, found {found}"
        )


class _PacketTap:
    """Stands in for a receiver's jitter buffer: keeps the packet instead of assembling frames.

    aiortc's ``_handle_rtp_packet`` still does statistics (RTCP receiver reports), RTX unwrapping, NACK
    generation and REMB, then hands the packet to its jitter buffer. Taking it there means no frame is ever
    assembled or decoded.
    """

    capacity = 1

    def __init__(self) -> None:
        self.packet: RtpPacket | None = None

    def add(self, packet: RtpPacket) -> tuple[bool, None]:
        self.packet = packet
        return False, None


def tap_receiver(
    receiver: RTCRtpReceiver, on_packet: Callable[[RtpPacket], Awaitable[None]]
) -> None:
    """Route every RTP packet the receiver accepts to ``on_packet``, bypassing depacketising and decoding."""
    tap = _PacketTap()
    if not hasattr(receiver, "_RTCRtpReceiver__jitter_buffer"):
        raise IncompatibleAiortc("RTCRtpReceiver has no jitter buffer attribute to tap")
    receiver._RTCRtpReceiver__jitter_buffer = tap  # type: ignore[attr-defined]
    handle = receiver._handle_rtp_packet

    async def handle_and_forward(packet: RtpPacket, arrival_time_ms: int) -> None:
        await handle(packet, arrival_time_ms)
        taken, tap.packet = tap.packet, None
        if taken is not None:
            await on_packet(taken)

    receiver._handle_rtp_packet = handle_and_forward  # type: ignore[method-assign]


def hook_sender(
    sender: RTCRtpSender,
    on_keyframe_request: Callable[[], None],
    on_nack: Callable[[int], Awaitable[None]],
) -> None:
    """Make a sender's PLI/FIR and NACK handling ours: it has no encoder and no history of its own."""
    for name in ("_send_keyframe", "_retransmit", "_handle_rtcp_packet"):
        if not hasattr(sender, name):
            raise IncompatibleAiortc(f"RTCRtpSender.{name} is gone")
    sender._send_keyframe = on_keyframe_request  # type: ignore[method-assign]
    sender._retransmit = on_nack  # type: ignore[method-assign]


class SenderReportState:
    """Writes the counters a sender puts in its RTCP sender reports, as if it had sent our packets itself."""

    __slots__ = ("_sender",)

    def __init__(self, sender: RTCRtpSender) -> None:
        for name in ("packet_count", "octet_count", "ntp_timestamp", "rtp_timestamp"):
            if not hasattr(sender, f"_RTCRtpSender__{name}"):
                raise IncompatibleAiortc(f"RTCRtpSender has no {name} counter")
        self._sender = sender

    def sent(self, ntp_timestamp: int, rtp_timestamp: int, payload_bytes: int) -> None:
        d: dict[str, Any] = self._sender.__dict__
        d["_RTCRtpSender__ntp_timestamp"] = ntp_timestamp
        d["_RTCRtpSender__rtp_timestamp"] = rtp_timestamp
        d["_RTCRtpSender__octet_count"] += payload_bytes
        d["_RTCRtpSender__packet_count"] += 1

    @property
    def packets(self) -> int:
        return int(self._sender.__dict__["_RTCRtpSender__packet_count"])

    @property
    def octets(self) -> int:
        return int(self._sender.__dict__["_RTCRtpSender__octet_count"])


def negotiated_codecs(transceiver: RTCRtpTransceiver) -> list[Any]:
    """The codecs both sides agreed on for this m-line (RTX included), in preference order."""
    return list(transceiver._codecs)


def extension_ids(transport: RTCDtlsTransport) -> tuple[int | None, int | None]:
    """(abs-send-time id, ssrc-audio-level id) negotiated on this bundle transport, None when absent."""
    ext_map: HeaderExtensionsMap = transport._rtp_header_extensions_map
    ids = ext_map._HeaderExtensionsMap__ids  # type: ignore[attr-defined]
    return ids.abs_send_time, ids.audio_level


def rtx_ssrc(sender: RTCRtpSender) -> int:
    return int(sender._rtx_ssrc)


def restrict_host_addresses(addresses: list[str]) -> None:
    """Gather host candidates only on ``addresses`` (a multi-homed server, or loopback in tests).

    aioice gathers on every interface but loopback and has no option for it.
    """
    if not addresses:
        return
    chosen = list(addresses)

    def get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return [a for a in chosen if (":" in a and use_ipv6) or (":" not in a and use_ipv4)]

    aioice.ice.get_host_addresses = get_host_addresses


class _PortRangeLoop:
    """The running loop, except that UDP sockets asked for on port 0 are bound inside [low, high]."""

    def __init__(self, loop: asyncio.AbstractEventLoop, low: int, high: int) -> None:
        self._loop = loop
        self._low, self._high = low, high

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loop, name)

    async def create_datagram_endpoint(self, factory: Any, local_addr: Any = None, **kwargs: Any) -> Any:
        if local_addr is None or local_addr[1] != 0:
            return await self._loop.create_datagram_endpoint(factory, local_addr=local_addr, **kwargs)
        size = self._high - self._low + 1
        first = random.randrange(size)
        for i in range(size):
            port = self._low + (first + i) % size
            try:
                return await self._loop.create_datagram_endpoint(factory, local_addr=(local_addr[0], port), **kwargs)
            except OSError:
                continue
        raise OSError(f"no free UDP port in {self._low}-{self._high}")


def restrict_udp_ports(low: int, high: int) -> None:
    """Bind host candidates inside a UDP port range, so a hospital firewall can open exactly that range.

    aioice binds port 0 and has no option for a range; it finds its loop through ``asyncio.get_running_loop``.
    """
    shim = types.ModuleType("asyncio_port_range")
    shim.__dict__.update(asyncio.__dict__)
    shim.get_running_loop = lambda: _PortRangeLoop(asyncio.get_running_loop(), low, high)  # type: ignore[attr-defined]
    aioice.ice.asyncio = shim  # type: ignore[attr-defined]


def udp_sender(transport: RTCDtlsTransport) -> Callable[[bytes], None] | None:
    """A synchronous SRTP-protect-and-sendto for a connected transport whose ICE pair is plain UDP.

    aiortc sends each packet through five nested coroutines (DTLS, ICE transport, connection, pair, protocol);
    a relay sends every packet once per consumer, so that chain dominates its cost. None when the pair is not
    a plain UDP socket (e.g. TURN over TCP): the caller then uses aiortc's own path.
    """
    pair = transport.transport._connection._nominated.get(1)
    if pair is None or type(pair.protocol) is not aioice.ice.StunProtocol or pair.protocol.transport is None:
        return None
    protect = transport._tx_srtp.protect
    sendto = pair.protocol.transport.sendto
    address = pair.remote_addr
    counters: dict[str, Any] = transport.__dict__
    if "_RTCDtlsTransport__tx_bytes" not in counters:
        raise IncompatibleAiortc("RTCDtlsTransport has no tx counters")

    def send(data: bytes) -> None:
        packet = protect(data)
        sendto(packet, address)
        counters["_RTCDtlsTransport__tx_bytes"] += len(packet)
        counters["_RTCDtlsTransport__tx_packets"] += 1

    return send


def is_connected(transport: RTCDtlsTransport) -> bool:
    """``transport.state == "connected"`` without building the string: this is asked once per forwarded packet."""
    return transport._state is DtlsState.CONNECTED


def defer_sender_reports(sender: RTCRtpSender) -> Callable[[], None]:
    """Hold back a sender's RTCP loop until it has sent something; returns the function that releases it.

    Every consumer's sender wakes up about once a second to send a report, even for a participant who publishes
    nothing (a receive-only site): in a room of such sites most senders carry nothing, and their reports cost the
    relay about 8 % of its CPU (py-spy) and the sites' downlinks a trickle of useless packets.
    """
    for name in ("_run_rtcp", "_RTCRtpSender__rtcp_started", "_RTCRtpSender__rtcp_exited"):
        if not hasattr(sender, name):
            raise IncompatibleAiortc(f"RTCRtpSender has no {name}")
    run_rtcp = sender._run_rtcp
    first_media = asyncio.Event()

    async def run_rtcp_after_first_media() -> None:
        sender._RTCRtpSender__rtcp_started.set()  # type: ignore[attr-defined]  # stop() waits for it
        try:
            await first_media.wait()
        except asyncio.CancelledError:
            sender._RTCRtpSender__rtcp_exited.set()  # type: ignore[attr-defined]
            return
        await run_rtcp()

    sender._run_rtcp = run_rtcp_after_first_media  # type: ignore[method-assign]
    return first_media.set


def uplink_estimate_bps(receiver: RTCRtpReceiver) -> int | None:
    """The bitrate aiortc's receive-side estimator (REMB) last computed for this receiver's stream, if any.

    Audio receivers have no estimator, and it needs the publisher's abs-send-time extension.
    """
    if not hasattr(receiver, "_RTCRtpReceiver__remote_bitrate_estimator"):
        raise IncompatibleAiortc("RTCRtpReceiver has no remote bitrate estimator")
    estimator = receiver._RTCRtpReceiver__remote_bitrate_estimator  # type: ignore[attr-defined]
    if estimator is None:
        return None
    control = estimator.rate_control
    if not control.current_bitrate_initialized:
        return None
    return int(control.current_bitrate)


class RembWatch:
    """The last REMB a sender's remote end sent about this sender's stream (bit/s), and when (monotonic)."""

    __slots__ = ("at", "bitrate")

    def __init__(self) -> None:
        self.bitrate: int | None = None
        self.at = 0.0


def watch_remb(sender: RTCRtpSender) -> RembWatch:
    """Note every REMB that reaches ``sender`` (RTCP only, about one a second; RTP never passes here)."""
    if not hasattr(sender, "_handle_rtcp_packet"):
        raise IncompatibleAiortc("RTCRtpSender._handle_rtcp_packet is gone")
    existing = sender.__dict__.get("_hoichan_remb")
    if isinstance(existing, RembWatch):
        return existing
    watch = RembWatch()
    handle = sender._handle_rtcp_packet

    async def handle_and_watch(packet: Any) -> None:
        if isinstance(packet, RtcpPsfbPacket) and packet.fmt == RTCP_PSFB_APP:
            try:
                bitrate, ssrcs = unpack_remb_fci(packet.fci)
            except ValueError:
                pass
            else:
                if sender._ssrc in ssrcs:
                    watch.bitrate, watch.at = int(bitrate), time.monotonic()
        await handle(packet)

    sender._handle_rtcp_packet = handle_and_watch  # type: ignore[method-assign]
    sender.__dict__["_hoichan_remb"] = watch
    return watch


@dataclass(frozen=True)
class ReceivedStream:
    """One incoming media stream's RTCP receiver statistics (RFC 3550 counters, interarrival jitter in ms)."""

    ssrc: int
    received: int
    lost: int
    jitter_ms: float


def received_streams(receiver: RTCRtpReceiver) -> list[ReceivedStream]:
    """The statistics of the media streams a receiver gets, retransmission (RTX) streams left out.

    ``getStats()`` has one ``inbound-rtp`` entry per receiver, the last SSRC's: once one retransmission arrived
    that is the RTX stream's, whose loss counts only lost retransmissions and whose jitter freezes when
    retransmissions stop. The media stream's own counters are the network's loss before repair.
    """
    for name in ("_RTCRtpReceiver__remote_streams", "_RTCRtpReceiver__rtx_ssrc"):
        if not hasattr(receiver, name):
            raise IncompatibleAiortc(f"RTCRtpReceiver has no {name}")
    streams = receiver._RTCRtpReceiver__remote_streams  # type: ignore[attr-defined]
    rtx = receiver._RTCRtpReceiver__rtx_ssrc  # type: ignore[attr-defined]
    return [
        ReceivedStream(ssrc, stream.packets_received, stream.packets_lost, stream.jitter / stream._clockrate * 1000)
        for ssrc, stream in list(streams.items())
        if ssrc not in rtx
    ]


def nominated_pair(transport: RTCDtlsTransport) -> dict[str, str] | None:
    """The ICE candidate pair carrying this transport: {local, remote: host/srflx/prflx/relay, protocol: udp/tcp}."""
    connection = transport.transport._connection
    pair = connection._nominated.get(1)
    if pair is None:
        return None
    local, remote = pair.local_candidate, pair.remote_candidate
    return {"local": str(local.type), "remote": str(remote.type), "protocol": str(local.transport).lower()}


def nominated_remote_address(transport: RTCDtlsTransport) -> tuple[str, int] | None:
    """The far end's address on the ICE pair in use (a TURN server's relay address when the peer is relayed)."""
    pair = transport.transport._connection._nominated.get(1)
    if pair is None:
        return None
    return (str(pair.remote_addr[0]), int(pair.remote_addr[1]))
