"""Producers and consumers: RTP forwarded packet by packet, never decoded (mediasoup's vocabulary).

A ``Producer`` is one participant's audio or video entering the relay. It outlives that participant's peer
connections: when the participant reconnects, the new upstream is attached to the same producer and each
``Consumer`` (one copy sent to one other participant) rewrites sequence numbers and timestamps so its stream
stays continuous, waiting for a keyframe before it sends video again.
"""

from __future__ import annotations

import asyncio
import logging
import random
import struct
import time
from collections.abc import Callable
from typing import Any, Protocol

from aiortc import RTCRtpReceiver, RTCRtpSender, RTCRtpTransceiver, clock
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtp import RtcpRrPacket, RtpPacket

from . import hooks
from .rtp import (
    ExtensionKey,
    is_h264_keyframe_start,
    is_vp8_keyframe_start,
    stamp,
    template,
)

logger = logging.getLogger(__name__)

HISTORY_SIZE = 512  # packets kept per producer to answer consumers' NACKs (≈ 5 s of 600 kbit/s video)
PLI_INTERVAL = 0.5  # at most one keyframe request upstream per producer per interval
KEYFRAME_RETRY = 1.0  # a consumer still waiting for a keyframe asks again after this long
LOSS_FRESH = 5.0  # seconds a subscriber's receiver report counts towards what its publisher is told


def codec_key(codec: Any) -> str:
    """What must match between a producer's and a consumer's codec for packets to pass unchanged."""
    name = codec.mimeType.lower()
    if name == "video/h264":
        return f"{name};{codec.parameters.get('packetization-mode', 0)}"
    return name


class PacketSink(Protocol):
    """Something besides consumers that wants every packet of a producer (the room's recorder)."""

    def feed(self, producer: "Producer", packet: RtpPacket, codec: Any) -> None: ...


class Producer:
    """One participant's track entering the relay, forwarded to every consumer."""

    def __init__(self, participant_id: str, kind: str) -> None:
        self.participant_id = participant_id
        self.kind = kind
        self.consumers: set[Consumer] = set()
        self.sink: PacketSink | None = None
        self.epoch = 0  # bumped whenever a new upstream (peer connection) is attached
        self.packets_received = 0
        self._codecs: dict[int, Any] = {}
        self._receiver: RTCRtpReceiver | None = None
        self._media_ssrc: int | None = None
        self._history: list[RtpPacket | None] = [None] * HISTORY_SIZE
        self._last_pli = 0.0
        self._pli_scheduled = False
        self._closed = False

    def attach(self, transceiver: RTCRtpTransceiver) -> None:
        """Take packets from a (new) upstream receiver; consumers resynchronise on the next keyframe."""
        self._receiver = transceiver.receiver
        self._media_ssrc = None
        self._codecs = {}
        self._history = [None] * HISTORY_SIZE
        self.epoch += 1
        receiver = transceiver.receiver
        hooks.tap_receiver(receiver, lambda packet: self._on_packet(receiver, packet))
        hooks.rewrite_receiver_rtcp(receiver, self._upstream_rtcp)

    def negotiated(self, transceiver: RTCRtpTransceiver) -> None:
        """Learn the payload types the upstream negotiated (after each offer/answer)."""
        if transceiver.receiver is self._receiver:
            self._codecs = {c.payloadType: c for c in hooks.negotiated_codecs(transceiver)}

    def close(self) -> None:
        self._closed = True
        self.sink = None  # a packet arriving while the connection closes must not reopen a finished recording
        for consumer in list(self.consumers):
            consumer.close()
        self.consumers.clear()

    def history(self, sequence_number: int) -> RtpPacket | None:
        packet = self._history[sequence_number % HISTORY_SIZE]
        if packet is not None and packet.sequence_number == sequence_number:
            return packet
        return None

    def downstream_loss(self) -> int:
        """The worst loss (8-bit fraction) any subscriber reported for this track in the last ``LOSS_FRESH`` s."""
        since = time.monotonic() - LOSS_FRESH
        return max((c.feedback.fraction_lost for c in self.consumers if c.feedback.report_at >= since), default=0)

    def _upstream_rtcp(self, packet: Any) -> Any:
        """Report the worst of the uplink's and the subscribers' audio loss to the publisher.

        An Opus encoder adds in-band FEC according to the loss its receiver reports (browsers read the report's
        fraction lost); a relay that reported only its own uplink would leave a lossy subscriber unprotected.
        """
        if self.kind == "audio" and isinstance(packet, RtcpRrPacket):
            worst = self.downstream_loss()
            for report in packet.reports:
                report.fraction_lost = max(report.fraction_lost, worst)
        return packet

    def request_keyframe(self) -> None:
        """Ask the publisher for a keyframe, coalescing bursts of requests from many consumers."""
        if self.kind != "video" or self._closed or self._pli_scheduled:
            return
        wait = self._last_pli + PLI_INTERVAL - time.monotonic()
        if wait <= 0:
            self._send_pli()
        else:
            self._pli_scheduled = True
            asyncio.get_running_loop().call_later(wait, self._send_pli)

    def _send_pli(self) -> None:
        self._pli_scheduled = False
        if self._closed or self._receiver is None or self._media_ssrc is None:
            return
        self._last_pli = time.monotonic()
        asyncio.ensure_future(self._receiver._send_rtcp_pli(self._media_ssrc))

    async def _on_packet(self, receiver: RTCRtpReceiver, packet: RtpPacket) -> None:
        if self._closed or receiver is not self._receiver or not packet.payload:  # gone, stale upstream, or padding
            return
        codec = self._codecs.get(packet.payload_type)
        if codec is None:
            return
        self.packets_received += 1
        self._media_ssrc = packet.ssrc
        self._history[packet.sequence_number % HISTORY_SIZE] = packet
        key = codec_key(codec)
        if self.kind == "video":
            detect = is_h264_keyframe_start if key.startswith("video/h264") else is_vp8_keyframe_start
            keyframe = detect(packet.payload)
        else:
            keyframe = True
        if self.sink is not None:
            self.sink.feed(self, packet, codec)
        ntp = clock.current_ntp_time()
        templates: dict[ExtensionKey, bytes] = {}
        for consumer in tuple(self.consumers):
            consumer.forward(packet, key, keyframe, ntp, templates)


class Consumer:
    """One producer's stream sent to one participant, on a sender of that participant's peer connection."""

    def __init__(self, producer: Producer, transceiver: RTCRtpTransceiver) -> None:
        self.producer = producer
        self.transceiver = transceiver
        self.sender: RTCRtpSender = transceiver.sender
        self.packets_sent = 0
        self._transport: RTCDtlsTransport = transceiver.sender.transport
        self._report = hooks.SenderReportState(self.sender)
        self.feedback = hooks.watch_feedback(self.sender)  # the subscriber's REMB and loss for this stream
        self._ssrc = self.sender._ssrc
        self._rtx_ssrc = hooks.rtx_ssrc(self.sender)
        self._payload_types: dict[str, int] = {}
        self._rtx_types: dict[int, int] = {}
        self._clock_rate = 90000 if producer.kind == "video" else 48000
        self._ext_key: ExtensionKey = (None, None)
        self._active = False
        self._epoch = -1
        self._waiting = True
        self._last_request = 0.0
        self._seq_offset = 0
        self._ts_offset = random.getrandbits(32)
        self._start_seq = 0
        self._next_seq = random.getrandbits(15)  # lower half: avoids SRTP rollover trouble at start
        self._last_ts: int | None = None
        self._last_time = 0.0
        self._rtx_seq = random.getrandbits(15)
        self._send: Callable[[bytes], None] | None = None
        hooks.hook_sender(self.sender, self._on_keyframe_request, self._on_nack)
        self._release_reports: Callable[[], None] | None = hooks.defer_sender_reports(self.sender)
        producer.consumers.add(self)

    def activate(self) -> None:
        """Start forwarding once this m-line is negotiated: learn the payload types it agreed on."""
        codecs = hooks.negotiated_codecs(self.transceiver)
        self._payload_types = {}
        self._rtx_types = {}
        for codec in codecs:
            if codec.mimeType.lower().endswith("/rtx"):
                self._rtx_types[int(codec.parameters.get("apt", -1))] = codec.payloadType
            else:
                self._payload_types.setdefault(codec_key(codec), codec.payloadType)
        self._transport = self.sender.transport
        self._active = True  # the keyframe request waits for DTLS: one sent earlier would be wasted

    def close(self) -> None:
        self._active = False
        self.producer.consumers.discard(self)

    def _on_keyframe_request(self) -> None:
        self.producer.request_keyframe()

    def forward(
        self,
        packet: RtpPacket,
        codec_key_: str,
        keyframe: bool,
        ntp: int,
        templates: dict[ExtensionKey, bytes],
    ) -> None:
        if not self._active:
            return
        if not hooks.is_connected(self._transport):
            self._send = None
            return
        payload_type = self._payload_types.get(codec_key_)
        if payload_type is None:
            return
        seq = packet.sequence_number
        if self._epoch != self.producer.epoch:
            self._epoch = self.producer.epoch
            self._waiting = True
        if self._waiting:
            if not keyframe:
                now = time.monotonic()
                if now - self._last_request > KEYFRAME_RETRY:
                    self._last_request = now
                    self.producer.request_keyframe()
                return
            self._resync(packet)
        elif (seq - self._start_seq) & 0xFFFF >= 0x8000:
            return  # older than our first forwarded packet
        out_seq = (seq + self._seq_offset) & 0xFFFF
        if (out_seq - self._next_seq) & 0xFFFF < 0x8000:
            self._next_seq = (out_seq + 1) & 0xFFFF
            self._last_ts = (packet.timestamp + self._ts_offset) & 0xFFFFFFFF
            self._last_time = time.monotonic()
        out_ts = (packet.timestamp + self._ts_offset) & 0xFFFFFFFF
        tmpl = templates.get(self._ext_key)
        if tmpl is None:
            tmpl = templates[self._ext_key] = template(packet, self._ext_key, (ntp >> 14) & 0xFFFFFF)
        data = stamp(tmpl, packet.marker, payload_type, out_seq, out_ts, self._ssrc)
        self._report.sent(ntp, out_ts, len(packet.payload))
        self.packets_sent += 1
        self._transmit(data)

    def _transmit(self, data: bytes) -> None:
        if self._send is None:
            self._send = hooks.udp_sender(self._transport) or self._send_via_aiortc
            if self._release_reports is not None:
                self._release_reports()
                self._release_reports = None
        self._send(data)

    def _send_via_aiortc(self, data: bytes) -> None:
        asyncio.ensure_future(self._send_rtp(data))

    async def _send_rtp(self, data: bytes) -> None:
        try:
            await self._transport._send_rtp(data)
        except ConnectionError:
            pass

    def _resync(self, packet: RtpPacket) -> None:
        """Continue this consumer's sequence and timeline from a new starting packet (keyframe)."""
        self._waiting = False
        self._ext_key = hooks.extension_ids(self._transport)  # configured once the sender has started
        self._start_seq = packet.sequence_number
        self._seq_offset = (self._next_seq - packet.sequence_number) & 0xFFFF
        if self._last_ts is not None:
            elapsed = max(1, int((time.monotonic() - self._last_time) * self._clock_rate))
            self._ts_offset = (self._last_ts + elapsed - packet.timestamp) & 0xFFFFFFFF

    async def _on_nack(self, out_seq: int) -> None:
        """Answer a consumer's NACK from the producer's history, as RTX when negotiated."""
        if not self._active or self._waiting:
            return
        packet = self.producer.history((out_seq - self._seq_offset) & 0xFFFF)
        if packet is None:
            return
        codec = self.producer._codecs.get(packet.payload_type)
        payload_type = self._payload_types.get(codec_key(codec)) if codec is not None else None
        if payload_type is None:
            return
        out_ts = (packet.timestamp + self._ts_offset) & 0xFFFFFFFF
        ntp = clock.current_ntp_time()
        if not hooks.is_connected(self._transport):
            return
        rtx_type = self._rtx_types.get(payload_type)
        if rtx_type is None:
            data = stamp(template(packet, self._ext_key, (ntp >> 14) & 0xFFFFFF), packet.marker, payload_type,
                         out_seq, out_ts, self._ssrc)
        else:
            tmpl = template(packet, self._ext_key, (ntp >> 14) & 0xFFFFFF,
                            payload=struct.pack("!H", out_seq) + packet.payload)
            data = stamp(tmpl, packet.marker, rtx_type, self._rtx_seq, out_ts, self._rtx_ssrc)
            self._rtx_seq = (self._rtx_seq + 1) & 0xFFFF
        self._transmit(data)
