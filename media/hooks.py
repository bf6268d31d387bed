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
from aiortc import codecs as aiortc_codecs
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtcdtlstransport import State as DtlsState
from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters
from aiortc.rtcrtpreceiver import NackGenerator
from aiortc.rtp import (
    RTCP_PSFB_APP,
    HeaderExtensionsMap,
    RtcpPsfbPacket,
    RtcpRrPacket,
    RtcpSrPacket,
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


RID_URI = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id"
REPAIRED_RID_URI = "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id"
SIMULCAST_EXTENSION_IDS = {RID_URI: 10, REPAIRED_RID_URI: 11}  # unused by aiortc's own extensions (1-3)


def negotiate_simulcast_extensions() -> None:
    """Offer and accept the rid header extensions on video: a simulcast publisher names its encodings with them.

    aiortc parses both extensions when negotiated, but never offers or accepts them itself.
    """
    video = aiortc_codecs.HEADER_EXTENSIONS["video"]
    for uri, ext_id in SIMULCAST_EXTENSION_IDS.items():
        if not any(e.uri == uri for e in video):
            video.append(RTCRtpHeaderExtensionParameters(id=ext_id, uri=uri))


class _NackPerSsrc:
    """aiortc's receiver-wide NACK generator, one per SSRC: simulcast layers have sequence numbers of their own."""

    def __init__(self) -> None:
        self._generators: dict[int, NackGenerator] = {}
        self.missing: set[int] = set()

    def add(self, packet: RtpPacket) -> bool:
        generator = self._generators.get(packet.ssrc)
        if generator is None:
            generator = self._generators[packet.ssrc] = NackGenerator()
        missed = generator.add(packet)
        self.missing = generator.missing  # read by the receiver right after, for this packet's SSRC
        return missed


def prepare_simulcast_receiver(receiver: RTCRtpReceiver) -> None:
    """Let a video receiver take several rid-named streams on one m-line, each with its RTX.

    aiortc keeps one NACK generator per receiver, which would mix the layers' sequence numbers into a storm of
    NACKs; and it maps RTX to media only through SSRCs signalled in the SDP, which a browser sending simulcast
    does not signal: its RTX packets carry the repaired stream's rid instead (in its first packets, until a
    receiver report acknowledges the SSRC, so this runs before aiortc sees the packet).
    """
    for name in ("_RTCRtpReceiver__nack_generator", "_RTCRtpReceiver__rtx_ssrc"):
        if not hasattr(receiver, name):
            raise IncompatibleAiortc(f"RTCRtpReceiver has no {name}")
    receiver._RTCRtpReceiver__nack_generator = _NackPerSsrc()  # type: ignore[attr-defined]
    rtx_to_media: dict[int, int] = receiver._RTCRtpReceiver__rtx_ssrc  # type: ignore[attr-defined]
    media_of_rid: dict[str, int] = {}
    handle = receiver._handle_rtp_packet

    async def learn_and_handle(packet: RtpPacket, arrival_time_ms: int) -> None:
        extensions = packet.extensions
        if extensions.rtp_stream_id is not None:
            media_of_rid[extensions.rtp_stream_id] = packet.ssrc
        elif extensions.repaired_rtp_stream_id is not None and packet.ssrc not in rtx_to_media:
            media = media_of_rid.get(extensions.repaired_rtp_stream_id)
            if media is not None:
                rtx_to_media[packet.ssrc] = media
        await handle(packet, arrival_time_ms)

    receiver._handle_rtp_packet = learn_and_handle  # type: ignore[method-assign]


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


class FeedbackWatch:
    """What a sender's remote end last said about this sender's stream: its REMB, its receiver-report loss, and
    the round-trip time that report gives.

    ``remb`` (bit/s) covers the SSRCs in ``remb_ssrcs``: a browser sends one REMB for everything it receives, an
    aiortc peer one per video stream, so a sum over senders must count each REMB once (see ``remb_total``).
    ``fraction_lost`` is the raw 8-bit value of the last report (divide by 256); ``rtt`` is in seconds, from any of
    the last few sender reports the report echoes (aiortc matches only the very last, which never happens once the
    round trip exceeds the report interval); times (``*_at``) are monotonic seconds.
    """

    __slots__ = ("fraction_lost", "remb", "remb_at", "remb_ssrcs", "report_at", "rtt", "rtt_at")

    def __init__(self) -> None:
        self.remb: int | None = None
        self.remb_ssrcs: tuple[int, ...] = ()
        self.remb_at = 0.0
        self.fraction_lost = 0
        self.report_at = 0.0
        self.rtt: float | None = None
        self.rtt_at = 0.0


SENDER_REPORTS_KEPT = 8


def watch_feedback(sender: RTCRtpSender) -> FeedbackWatch:
    """Note every REMB and receiver report that reaches ``sender``, and when it sent its sender reports (RTCP
    only, about one a second each way)."""
    for name in ("_handle_rtcp_packet", "_send_rtcp"):
        if not hasattr(sender, name):
            raise IncompatibleAiortc(f"RTCRtpSender.{name} is gone")
    existing = sender.__dict__.get("_hoichan_feedback")
    if isinstance(existing, FeedbackWatch):
        return existing
    watch = FeedbackWatch()
    sent_reports: dict[int, float] = {}  # LSR (middle 32 bits of the report's NTP time) -> wall time sent
    handle = sender._handle_rtcp_packet
    send = sender._send_rtcp

    async def handle_and_watch(packet: Any) -> None:
        if isinstance(packet, RtcpPsfbPacket) and packet.fmt == RTCP_PSFB_APP:
            try:
                bitrate, ssrcs = unpack_remb_fci(packet.fci)
            except ValueError:
                pass
            else:
                if sender._ssrc in ssrcs:
                    watch.remb, watch.remb_ssrcs, watch.remb_at = int(bitrate), tuple(ssrcs), time.monotonic()
        elif isinstance(packet, (RtcpRrPacket, RtcpSrPacket)):
            for report in packet.reports:
                if report.ssrc != sender._ssrc:
                    continue
                watch.fraction_lost, watch.report_at = report.fraction_lost, time.monotonic()
                sent_at = sent_reports.get(report.lsr)
                if sent_at is not None and report.dlsr:
                    rtt = time.time() - sent_at - report.dlsr / 65536
                    if rtt >= 0:
                        watch.rtt, watch.rtt_at = rtt, watch.report_at
        await handle(packet)

    async def note_and_send(packets: list[Any]) -> None:
        for packet in packets:
            if isinstance(packet, RtcpSrPacket):
                sent_reports[(packet.sender_info.ntp_timestamp >> 16) & 0xFFFFFFFF] = time.time()
                while len(sent_reports) > SENDER_REPORTS_KEPT:
                    del sent_reports[next(iter(sent_reports))]
        await send(packets)

    sender._handle_rtcp_packet = handle_and_watch  # type: ignore[method-assign]
    sender._send_rtcp = note_and_send  # type: ignore[method-assign]
    sender.__dict__["_hoichan_feedback"] = watch
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


def remb_total(watches: list[FeedbackWatch], since: float) -> int | None:
    """The sum of the distinct REMBs newer than ``since`` among ``watches`` (None when there is none)."""
    latest: dict[tuple[int, ...], int] = {}
    for watch in watches:
        if watch.remb is not None and watch.remb_at >= since:
            latest[watch.remb_ssrcs] = watch.remb
    return sum(latest.values()) if latest else None


RtcpRewrite = Callable[[Any], Any]


def rewrite_receiver_rtcp(receiver: RTCRtpReceiver, rewrite: RtcpRewrite) -> None:
    """Pass every RTCP packet a receiver sends upstream (reports, NACK, PLI, REMB) through ``rewrite`` first.

    The relay uses it to tell a publisher about its subscribers (the worst audio loss downstream, so that the
    publisher's Opus encoder adds FEC) and to cap the REMB it sends. ``rewrite`` returns the packet to send.
    """
    if not hasattr(receiver, "_send_rtcp"):
        raise IncompatibleAiortc("RTCRtpReceiver._send_rtcp is gone")
    send = receiver._send_rtcp

    async def rewrite_and_send(packet: Any) -> None:
        await send(rewrite(packet))

    receiver._send_rtcp = rewrite_and_send  # type: ignore[method-assign]


OPUS_PARAMETERS = {"minptime": 10, "useinbandfec": 1, "usedtx": 1}


def negotiate_opus_fec_dtx() -> None:
    """Offer and answer Opus with in-band FEC and DTX (RFC 7587 fmtp): browsers then protect speech against loss
    and send almost nothing in silence. aiortc's Opus has no fmtp parameters and no option to add them.
    """
    for codec in aiortc_codecs.CODECS["audio"]:
        if codec.mimeType.lower() == "audio/opus":
            codec.parameters = dict(OPUS_PARAMETERS)
            return
    raise IncompatibleAiortc("aiortc offers no Opus codec")


class _RtcpListener:
    """Stands in the transport's RTP router for a sender that is not an aiortc ``RTCRtpSender``."""

    def __init__(self, handler: Callable[[Any], Awaitable[None]]) -> None:
        self._handler = handler

    async def _handle_rtcp_packet(self, packet: Any) -> None:
        await self._handler(packet)


def listen_rtcp(transport: RTCDtlsTransport, ssrc: int, handler: Callable[[Any], Awaitable[None]]) -> None:
    """Hand the RTCP arriving on ``transport`` about ``ssrc`` (reports, NACK, PLI, REMB) to ``handler``.

    For a stream sent by ``send_rtp`` (the test simulcast publisher): aiortc routes RTCP only to its own senders.
    """
    if not hasattr(transport, "_rtp_router"):
        raise IncompatibleAiortc("RTCDtlsTransport has no RTP router")
    transport._rtp_router.register_sender(_RtcpListener(handler), ssrc)  # type: ignore[arg-type]


async def send_rtp(transport: RTCDtlsTransport, packet: RtpPacket) -> None:
    """Send ``packet`` with the header extension ids negotiated on ``transport`` (SRTP-protected)."""
    await transport._send_rtp(packet.serialize(transport._rtp_header_extensions_map))


def observe_receiver(receiver: RTCRtpReceiver, on_packet: Callable[[RtpPacket], None]) -> None:
    """Show every RTP packet reaching ``receiver`` to ``on_packet`` first, then let aiortc handle it as usual.

    A test subscriber measures audio loss this way (which sequence numbers arrived, which carry FEC).
    """
    if not hasattr(receiver, "_handle_rtp_packet"):
        raise IncompatibleAiortc("RTCRtpReceiver._handle_rtp_packet is gone")
    handle = receiver._handle_rtp_packet

    async def observe_and_handle(packet: RtpPacket, arrival_time_ms: int) -> None:
        on_packet(packet)
        await handle(packet, arrival_time_ms)

    receiver._handle_rtp_packet = observe_and_handle  # type: ignore[method-assign]


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
