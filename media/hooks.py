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
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aioice
import aioice.ice
import aioice.stun
import aiortc
from aiortc import RTCRtpReceiver, RTCRtpSender, RTCRtpTransceiver
from aiortc import codecs as aiortc_codecs
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtcdtlstransport import State as DtlsState
from aiortc.rtcrtpparameters import RTCRtcpFeedback, RTCRtpHeaderExtensionParameters
from aiortc.rtcsctptransport import (
    SCTP_DATA_UNORDERED,
    CookieAckChunk,
    DataChunk,
    ForwardTsnChunk,
    RTCSctpTransport,
    SackChunk,
)
from aiortc.rtp import (
    RTCP_PSFB_APP,
    HeaderExtensionsMap,
    RtcpPsfbPacket,
    RtcpRrPacket,
    RtcpSrPacket,
    RtpPacket,
    pack_remb_fci,
    unpack_remb_fci,
    unwrap_rtx,
)

from . import nack
from .errors import IncompatibleAiortc

PINNED_AIORTC = "1.16.0"
PINNED_AIOICE = "0.13.0"


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


def prepare_simulcast_receiver(receiver: RTCRtpReceiver) -> None:
    """Let a video receiver take several rid-named streams on one m-line, each with its RTX.

    aiortc keeps one NACK generator per receiver, which would mix the layers' sequence numbers into a storm of
    NACKs (``nack.py``'s keeps them apart, and retries); and it maps RTX to media only through SSRCs signalled in the SDP, which a browser sending simulcast
    does not signal: its RTX packets carry the repaired stream's rid instead (in its first packets, until a
    receiver report acknowledges the SSRC, so this runs before aiortc sees the packet).
    """
    for name in ("_RTCRtpReceiver__nack_generator", "_RTCRtpReceiver__rtx_ssrc"):
        if not hasattr(receiver, name):
            raise IncompatibleAiortc(f"RTCRtpReceiver has no {name}")
    nack.install(receiver)
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


def decode_from_keyframes(receiver: RTCRtpReceiver, is_keyframe_start: Callable[[RtpPacket], bool],
                          is_media: Callable[[RtpPacket], bool], stuck_after: float = 1.0) -> None:
    """Make a (test subscriber's) video receiver get past a packet that never arrives, as a browser does.

    aiortc's jitter buffer hands frames out strictly in order, and NACKs a gap only when it first sees it: one
    packet lost with its retransmission holds back every later frame, keyframes included, until 512 more
    packets have come (tens of seconds of a low layer). A browser decodes a complete keyframe whatever came
    before it, and asks for one when frames stop completing. So here: a keyframe's first packet drops the
    incomplete frames in front of it, and a buffer that has not moved on for ``stuck_after`` seconds while
    media packets (``is_media``: not retransmissions) keep arriving sends a PLI (at most one per ``stuck_after``).
    """
    name = "_RTCRtpReceiver__jitter_buffer"
    for needed in (name, "_send_rtcp_pli", "_RTCRtpReceiver__rtx_ssrc", "_RTCRtpReceiver__codecs"):
        if not hasattr(receiver, needed):
            raise IncompatibleAiortc(f"RTCRtpReceiver has no {needed}")
    handle = receiver._handle_rtp_packet
    origin: int | None = None
    moved_at = asked_at = time.monotonic()

    def unwrapped(packet: RtpPacket) -> RtpPacket:
        """The media packet an RTX packet repairs (a keyframe's first packet lost and resent is still one)."""
        media_ssrc = receiver._RTCRtpReceiver__rtx_ssrc.get(packet.ssrc)  # type: ignore[attr-defined]
        codec = receiver._RTCRtpReceiver__codecs.get(packet.payload_type)  # type: ignore[attr-defined]
        apt = codec.parameters.get("apt") if codec is not None else None
        if media_ssrc is None or not isinstance(apt, int) or len(packet.payload) < 2:
            return packet
        return unwrap_rtx(packet, payload_type=apt, ssrc=media_ssrc)

    async def skip_and_handle(packet: RtpPacket, arrival_time_ms: int) -> None:
        nonlocal origin, moved_at, asked_at
        jitter = getattr(receiver, name)
        now = time.monotonic()
        start = jitter._origin
        media = unwrapped(packet)
        if start is not None and is_keyframe_start(media):
            ahead = (media.sequence_number - start) & 0xFFFF
            if 0 < ahead < jitter.capacity and any(
                    jitter._packets[(start + i) % jitter.capacity] is None for i in range(ahead)):
                jitter.remove(ahead)
        if jitter._origin != origin:
            origin, moved_at = jitter._origin, now
        elif is_media(packet) and now - max(moved_at, asked_at) >= stuck_after:
            asked_at = now
            await receiver._send_rtcp_pli(packet.ssrc)
        await handle(packet, arrival_time_ms)

    receiver._handle_rtp_packet = skip_and_handle  # type: ignore[method-assign]


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


CONSENT_RETRANSMISSIONS = 2  # a consent check waits 0.5 + 1 + 2 s for its answer, not aioice's 0.5 s


AIOICE_QUERY_CONSENT = aioice.ice.Connection.query_consent
"""aioice's own consent checks, kept before ``patient_consent`` replaces them (tests compare the two)."""


def patient_consent() -> None:
    """Keep a connection whose round trip exceeds half a second: consent expires after 30 s without an answer.

    aioice sends each consent check (RFC 7675, every ~5 s) without retransmission and gives up on it after its
    first 500 ms timeout, so on a link whose round trip is longer (EDGE, satellite: 0.8–1 s and more) every check
    fails and the connection is closed after six of them, though media flow. Here a check is retransmitted and
    waited for up to 3.5 s, and consent expires after ``CONSENT_FAILURES × CONSENT_INTERVAL`` (30 s) without any
    answer, as the RFC says, however long the failed checks took.
    """
    ice = aioice.ice

    async def query_consent(self: Any) -> None:
        assert self.remote_password is not None
        answered = time.monotonic()
        while True:
            await asyncio.sleep(ice.CONSENT_INTERVAL * (0.8 + 0.4 * random.random()))
            for pair in self._nominated.values():
                request = self.build_request(pair, nominate=False)
                try:
                    await pair.protocol.request(request, pair.remote_addr,
                                                integrity_key=self.remote_password.encode("utf8"),
                                                retransmissions=CONSENT_RETRANSMISSIONS)
                    answered = time.monotonic()
                except aioice.stun.TransactionError:
                    pass
            if time.monotonic() - answered >= ice.CONSENT_FAILURES * ice.CONSENT_INTERVAL:
                ice.logger.info("Connection: consent to send expired")
                self._query_consent_task = None
                return await self.close()

    ice.Connection.query_consent = query_consent  # type: ignore[method-assign]


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


REPORTS_KEPT = 32  # receiver report times kept: half a minute of reports, longer than any NACK looks back


class FeedbackWatch:
    """What a sender's remote end last said about this sender's stream: its REMB, its receiver-report loss, and
    the round-trip time that report gives.

    ``remb`` (bit/s) covers the SSRCs in ``remb_ssrcs``: a browser sends one REMB for everything it receives, an
    aiortc peer one per video stream, so a sum over senders must count each REMB once (see ``remb_total``).
    ``fraction_lost`` is the raw 8-bit value of the last report (divide by 256), ``lost_total`` its cumulative count
    of packets lost and ``highest`` the low 16 bits of the highest sequence number it received (aiortc sends no
    more); ``rtt`` is in seconds, from any of
    the last few sender reports the report echoes (aiortc matches only the very last, which never happens once the
    round trip exceeds the report interval); ``reports`` the times of the last ``REPORTS_KEPT`` receiver reports;
    times are monotonic seconds.
    """

    __slots__ = ("fraction_lost", "highest", "lost_total", "remb", "remb_at", "remb_ssrcs", "report_at", "reports",
                 "rtt", "rtt_at")

    def __init__(self) -> None:
        self.remb: int | None = None
        self.remb_ssrcs: tuple[int, ...] = ()
        self.remb_at = 0.0
        self.fraction_lost = 0
        self.lost_total = 0
        self.highest = 0
        self.report_at = 0.0
        self.reports: deque[float] = deque(maxlen=REPORTS_KEPT)  # when the last receiver reports came
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
                watch.reports.append(watch.report_at)
                watch.lost_total, watch.highest = report.packets_lost, report.highest_sequence & 0xFFFF
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
    # audio retransmissions come on the media stream itself, counted there as received: put them back as lost;
    # a second copy (two NACKs of one packet both answered: a stalled sender, a slow repair) is not the link's
    generator = nack.of(receiver)
    copies = 0  # arrivals that are not the link's delivery of an original
    if generator is not None and receiver.track is not None and receiver.track.kind == "audio":
        copies = generator.repaired + generator.duplicates
    return [
        ReceivedStream(ssrc, stream.packets_received - copies, stream.packets_lost + copies,
                       stream.jitter / stream._clockrate * 1000)
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


async def send_remb(receiver: RTCRtpReceiver, bitrate: int, ssrcs: list[int]) -> None:
    """Send the publisher a REMB of ``bitrate`` for ``ssrcs`` now, through ``_send_rtcp`` (so any rewrite applies).

    aiortc sends REMB only when its estimator updates; a cap set mid-call must reach the publisher at once.
    """
    if not hasattr(receiver, "_RTCRtpReceiver__rtcp_ssrc"):
        raise IncompatibleAiortc("RTCRtpReceiver has no RTCP SSRC")
    rtcp_ssrc = receiver._RTCRtpReceiver__rtcp_ssrc  # type: ignore[attr-defined]
    if rtcp_ssrc is None or not ssrcs:
        return
    packet = RtcpPsfbPacket(fmt=RTCP_PSFB_APP, ssrc=rtcp_ssrc, media_ssrc=0, fci=pack_remb_fci(bitrate, ssrcs))
    await receiver._send_rtcp(packet)


def cap_remb(packet: Any, cap: int) -> Any:
    """``packet`` with its REMB bitrate lowered to ``cap`` when it is a REMB above it; any other packet as is."""
    if not (isinstance(packet, RtcpPsfbPacket) and packet.fmt == RTCP_PSFB_APP):
        return packet
    try:
        bitrate, ssrcs = unpack_remb_fci(packet.fci)
    except ValueError:
        return packet
    if bitrate <= cap:
        return packet
    return RtcpPsfbPacket(fmt=RTCP_PSFB_APP, ssrc=packet.ssrc, media_ssrc=packet.media_ssrc,
                          fci=pack_remb_fci(cap, ssrcs))


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


def negotiate_opus_nack() -> None:
    """Offer and answer ``a=rtcp-fb:<opus> nack``: a publisher's lost speech packets can then be asked for again.

    Opus FEC repairs a lost packet only from the next one; two packets lost together (random loss twice in a row,
    or a queue that video overfills for a moment) leave a gap. Browsers keep a history for audio and answer NACK
    when it is negotiated, as aiortc's sender always does.
    """
    for codec in aiortc_codecs.CODECS["audio"]:
        if codec.mimeType.lower() == "audio/opus":
            if not any(f.type == "nack" and not f.parameter for f in codec.rtcpFeedback):
                codec.rtcpFeedback = [*codec.rtcpFeedback, RTCRtcpFeedback(type="nack")]
            return
    raise IncompatibleAiortc("aiortc offers no Opus codec")


def nack_audio(transceiver: RTCRtpTransceiver) -> bool:
    """Have an audio receiver NACK the packets it misses when its Opus negotiated ``nack``; True when it does.

    aiortc generates NACKs for video only (an audio receiver's generator is None); the generator works on any
    stream's sequence numbers. It counts what retransmissions repaired, so ``received_streams`` still reports the
    network's loss before repair. Idempotent across renegotiations.
    """
    receiver = transceiver.receiver
    if not any(c.mimeType.lower() == "audio/opus" and any(f.type == "nack" and not f.parameter
                                                           for f in c.rtcpFeedback)
               for c in negotiated_codecs(transceiver)):
        return False
    nack.install(receiver, outage_nacks=0)  # an outage's speech is past playing before a repair could come
    return True


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


SELF_PACED_WINDOW = 1 << 30
"""The congestion window of a self-paced association: never the limit."""
SACK_INTERVAL = 0.05
"""Seconds between a self-paced association's SACKs (RFC 9260 allows 200 ms of delay)."""


class _SelfPacedSctp(RTCSctpTransport):
    """An SCTP association whose sender paces itself, so SCTP's congestion window never holds it back."""

    _sack_sent_at: float
    _sack_timer: asyncio.TimerHandle | None
    _sack_task: asyncio.Future[None] | None
    on_packet: Callable[[int], None] | None
    """Told the size of every SCTP packet that arrives (all chunks: DATA, SACK, FORWARD TSN...)."""

    async def _handle_data(self, data: bytes) -> None:
        if self.on_packet is not None:
            self.on_packet(len(data))
        await super()._handle_data(data)

    @property
    def _cwnd(self) -> int:
        return SELF_PACED_WINDOW

    @_cwnd.setter
    def _cwnd(self, value: int) -> None:
        pass  # aiortc's slow start, halving on loss and reset on timeout do not apply

    async def _receive_chunk(self, chunk: Any) -> None:
        """A DATA, SACK or FORWARD TSN in COOKIE-ECHOED state is the peer's implicit COOKIE ACK (RFC 9260 §5.1: the
        peer sends them only once our COOKIE ECHO established the association, and the DTLS session authenticates
        them). aiortc waits for the COOKIE ACK itself, up to a 3 s T1 if it was lost, and meanwhile hands the
        peer's DATA to channels that cannot answer: a link test's PONG then raised and closed the connection (10 %
        loss during the INIT collision of two aiortc peers)."""
        if (self._association_state == self.State.COOKIE_ECHOED
                and isinstance(chunk, (DataChunk, SackChunk, ForwardTsnChunk))):
            await super()._receive_chunk(CookieAckChunk())
        await super()._receive_chunk(chunk)

    async def _send_sack(self) -> None:
        """At most one SACK per ``SACK_INTERVAL``: aiortc acknowledges every packet, and a download's SACKs (with
        gap blocks on a lossy link) filled a slow uplink (a 2000 kbit/s download measured as 928 over a 128 kbit/s
        uplink at 5 % loss). Only the reliable control channel waits on SACKs, and its retransmission timer is a
        second or more; the probes' sender paces itself and gives probes up by time."""
        wait = self._sack_sent_at + SACK_INTERVAL - time.monotonic()
        if wait <= 0:
            self._sack_sent_at = time.monotonic()
            await super()._send_sack()
        elif self._sack_timer is None:
            self._sack_timer = asyncio.get_running_loop().call_later(wait, self._delayed_sack)

    def _delayed_sack(self) -> None:
        self._sack_timer = None
        if self._sack_needed and self._association_state == self.State.ESTABLISHED:
            self._sack_sent_at = time.monotonic()
            self._sack_task = asyncio.ensure_future(super()._send_sack())

    async def _receive_sack_chunk(self, chunk: Any) -> None:
        await super()._receive_sack_chunk(chunk)
        if self._abandon_overdue():
            self._update_advanced_peer_ack_point()
            await self._transmit()

    def _update_advanced_peer_ack_point(self) -> None:
        """Forward the peer's cumulative TSN past every abandoned chunk at once, skipping the chunks between them that
        it already acknowledged in a gap: aiortc stops at the first of those, so after scattered losses each FORWARD
        TSN clears one gap, one round trip each."""
        queue = self._sent_queue
        last = None
        for index, chunk in enumerate(queue):
            if chunk._abandoned:
                last = index
            elif not chunk._acked:
                break
        for _ in range(0 if last is None else last + 1):
            chunk = queue.popleft()
            self._advanced_peer_ack_tsn = chunk.tsn
            if chunk._abandoned and not chunk.flags & SCTP_DATA_UNORDERED:
                self._forward_tsn_streams[chunk.stream_id] = (chunk.stream_seq, chunk.tsn)
        super()._update_advanced_peer_ack_point()

    def _abandon_overdue(self) -> bool:
        """Give up on never-retransmitted chunks not acknowledged two smoothed RTTs after they left. aiortc gives one
        up only once three SACKs name later chunks, and its SACKs name a limited number of gaps: after a burst of
        losses the peer's cumulative TSN then crawls forward one FORWARD TSN per SACK, while its gap-laden SACKs
        (one per packet it receives) fill a slow uplink for seconds."""
        deadline = time.time() - 2 * (self._srtt or 0.5) - 0.05
        abandoned = False
        for chunk in list(self._sent_queue):
            if (chunk._max_retransmits == 0 and not chunk._acked and not chunk._abandoned
                    and chunk._sent_time is not None and chunk._sent_time < deadline):
                abandoned = self._maybe_abandon(chunk) or abandoned
        return abandoned


def pace_sctp_ourselves(transport: RTCSctpTransport | None) -> None:
    """Let a link test's own pacer, not SCTP's congestion control, decide how fast DATA probes go out.

    SCTP's window halves on every loss, so a data-channel flood over a link with random loss measures the TCP-like
    fair share (≈ 1.2·MSS / (RTT·√loss): 350 kbit/s at 100 ms and 10 % loss), not the link's capacity, which is
    what RTP media (whose congestion control tolerates random loss) can use. The link test paces its probes and
    stops its ramp as soon as a queue builds up, which is the congestion control such a short flood needs. It also
    takes the peer's first DATA as the COOKIE ACK it may have lost (``_SelfPacedSctp._receive_chunk``)."""
    needs = ("_cwnd", "_flight_size", "_sent_queue", "_srtt", "_association_state", "_sack_needed")
    methods = ("_maybe_abandon", "_update_advanced_peer_ack_point", "_send_sack")
    if (transport is None or not all(name in vars(transport) for name in needs)
            or not all(hasattr(transport, name) for name in methods)):
        raise IncompatibleAiortc("RTCSctpTransport no longer keeps its congestion window in _cwnd")
    transport.__class__ = _SelfPacedSctp
    assert isinstance(transport, _SelfPacedSctp)
    transport._sack_sent_at, transport._sack_timer, transport._sack_task = 0.0, None, None
    transport.on_packet = None
