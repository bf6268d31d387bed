"""Producers and consumers: RTP forwarded packet by packet, never decoded (mediasoup's vocabulary).

A ``Producer`` is one participant's audio or video entering the relay. It outlives that participant's peer
connections: when the participant reconnects, the new upstream is attached to the same producer and each
``Consumer`` (one copy sent to one other participant) rewrites sequence numbers and timestamps so its stream
stays continuous, waiting for a keyframe before it sends video again.

Simulcast: a browser asked for it (``simulcast.py``) sends each of its video encodings on an SSRC of its own,
named by the rid header extension in its first packets. The producer keeps them apart as layers, 0 the lowest;
each consumer forwards one layer at a time, the one its subscriber's downlink can carry (``downlink.py``), or none
(paused). It switches only at a keyframe of the new layer, and renumbers sequence numbers, timestamps and VP8
picture ids so that its subscriber sees one continuous stream.
"""

from __future__ import annotations

import asyncio
import logging
import random
import struct
import time
from array import array
from collections.abc import Callable
from typing import Any, Protocol

from aiortc import RTCRtpReceiver, RTCRtpSender, RTCRtpTransceiver, clock
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtp import RtcpRrPacket, RtpPacket

from . import hooks, nack
from .holes import Holes
from .rtp import (
    ExtensionKey,
    Vp8Ids,
    is_h264_keyframe_start,
    is_vp8_keyframe_start,
    renumber_vp8,
    stamp,
    stamp_renumbered,
    template,
    vp8_ids,
)
from .simulcast import RIDS

logger = logging.getLogger(__name__)

HISTORY_SIZE = 512  # packets kept per layer to answer consumers' NACKs (≈ 5 s of 600 kbit/s video)
PLI_INTERVAL = 0.5  # at most one keyframe request upstream per layer per interval
KEYFRAME_RETRY = 1.0  # a consumer still waiting for a keyframe asks again after this long
LOSS_FRESH = 5.0  # seconds a subscriber's receiver report counts towards what its publisher is told
RATE_INTERVAL = 0.5  # layer bitrates are measured over at least this long
PACKET_OVERHEAD = 58  # bytes a packet costs on the wire beyond its payload: RTP header, extensions, SRTP tag, UDP, IP
SEGMENTS_KEPT = 3  # a consumer answers NACKs for packets of its last few layer switches
RESEND_SHARE = 1.0  # resends to a consumer may add at most its layer's bitrate...
RESEND_MIN_BPS = 200_000  # ...or this much, whichever is more (a keyframe after an outage, audio)
RESEND_BURST = 1.0  # s of that rate that may go out at once
OUTAGE_SILENCE = 4.0  # s between two receiver reports of a subscriber (they come about every second) that only a
# cut link explains: reports lost on a lossy link leave 2.5 s gaps (traced on "very bad"), 3+ lost in a row are rare
SENT_TIMES = 1024  # when each of a consumer's last packets went out (a power of two), for the NACKs that ask for them


def codec_key(codec: Any) -> str:
    """What must match between a producer's and a consumer's codec for packets to pass unchanged."""
    name = codec.mimeType.lower()
    if name == "video/h264":
        return f"{name};{codec.parameters.get('packetization-mode', 0)}"
    return name


class PacketSink(Protocol):
    """Something besides consumers that wants every packet of a producer (the room's recorder)."""

    def feed(self, producer: "Producer", packet: RtpPacket, codec: Any) -> None: ...


class Layer:
    """One encoding of a producer (the only one without simulcast): its SSRC, history and measured bitrate."""

    __slots__ = ("_mark", "active", "highest", "history", "index", "octets", "packets", "rate", "rid", "ssrc")

    def __init__(self, index: int, ssrc: int, rid: str | None) -> None:
        self.index = index
        self.ssrc = ssrc
        self.rid = rid
        self.history: list[RtpPacket | None] = [None] * HISTORY_SIZE
        self.octets = 0  # payload bytes of new packets (past the newest): repairs and late ones are not counted
        self.packets = 0
        self.rate = 0.0  # bit/s on the wire, smoothed
        self.active = True  # new packets arrived during the last measurement
        self.highest: int | None = None  # extended sequence number of the newest packet
        self._mark = (0, 0, time.monotonic())

    def arrived(self, sequence_number: int) -> bool:
        """Note a packet's arrival; True when it is new (past the newest), False for a repair or a late one.

        Only new packets make the layer's bitrate and keep it active: after an outage the publisher answers the
        relay's NACKs with a burst of up to 128 old packets, which counted as the layer's rate paused subscribers
        it fits; and a layer its publisher has stopped still gets answers to NACKs for its last packets for a
        second or two, while a subscriber left on it sees nothing decodable."""
        if self.highest is None:
            self.highest = sequence_number
            return True
        delta = (sequence_number - self.highest) & 0xFFFF
        if delta == 0 or delta >= 0x8000:
            return False
        self.highest += delta
        return True

    def measure(self, now: float) -> None:
        octets, packets, at = self._mark
        elapsed = now - at
        if elapsed <= 0:
            return
        sent = ((self.octets - octets) + (self.packets - packets) * PACKET_OVERHEAD) * 8 / elapsed
        self.rate = sent if not self.rate else 0.5 * self.rate + 0.5 * sent
        self.active = self.packets > packets
        self._mark = (self.octets, self.packets, now)


class Producer:
    """One participant's track entering the relay, forwarded to every consumer."""

    def __init__(self, participant_id: str, kind: str) -> None:
        self.participant_id = participant_id
        self.kind = kind
        self.consumers: set[Consumer] = set()
        self.sink: PacketSink | None = None
        self.epoch = 0  # bumped whenever a new upstream (peer connection) is attached
        self.packets_received = 0
        self.layers: list[Layer] = []  # lowest first
        self.simulcast = False  # more than one layer seen
        self.level = 127.0  # audio: smoothed level in -dBov from the audio-level extension (0 loudest, 127 silence)
        self.remb_cap: int | None = None  # video: the most its publisher is told it may send (a point's uplink cap)
        self.withheld = False  # video: its site is audio-only, no subscriber gets it (``downlink.py``)
        self._by_ssrc: dict[int, Layer] = {}
        self._codecs: dict[int, Any] = {}
        self._receiver: RTCRtpReceiver | None = None
        self._measured_at = 0.0
        self._last_pli: dict[int, float] = {}
        self._pli_scheduled: set[int] = set()
        self._closed = False

    def attach(self, transceiver: RTCRtpTransceiver) -> None:
        """Take packets from a (new) upstream receiver; consumers resynchronise on the next keyframe."""
        self._receiver = transceiver.receiver
        self._codecs = {}
        self.layers, self._by_ssrc, self.simulcast = [], {}, False
        self.epoch += 1
        receiver = transceiver.receiver
        if self.kind == "video":
            hooks.prepare_simulcast_receiver(receiver)
            generator = nack.of(receiver)
            if generator is not None:
                generator.on_lost = self._lost_upstream
        hooks.tap_receiver(receiver, lambda packet: self._on_packet(receiver, packet))
        hooks.rewrite_receiver_rtcp(receiver, self._upstream_rtcp)

    def negotiated(self, transceiver: RTCRtpTransceiver) -> None:
        """Learn the payload types the upstream negotiated (after each offer/answer)."""
        if transceiver.receiver is self._receiver:
            self._codecs = {c.payloadType: c for c in hooks.negotiated_codecs(transceiver)}
            if self.kind == "audio":
                hooks.nack_audio(transceiver)  # two speech packets lost together are asked for again

    def close(self) -> None:
        self._closed = True
        self.sink = None  # a packet arriving while the connection closes must not reopen a finished recording
        for consumer in list(self.consumers):
            consumer.close()
        self.consumers.clear()

    def history(self, layer: int, sequence_number: int) -> RtpPacket | None:
        for candidate in self.layers:
            if candidate.index == layer:
                packet = candidate.history[sequence_number % HISTORY_SIZE]
                if packet is not None and packet.sequence_number == sequence_number:
                    return packet
        return None

    def measure(self, now: float) -> list[Layer]:
        """The layers with their bitrates, measured at most every ``RATE_INTERVAL`` whoever asks."""
        if now - self._measured_at >= RATE_INTERVAL:
            self._measured_at = now
            for layer in self.layers:
                layer.measure(now)
        return self.layers

    def set_remb_cap(self, cap: int | None) -> None:
        """Cap every REMB sent upstream at ``cap`` bit/s from now on, and tell the publisher at once."""
        self.remb_cap = cap
        receiver = self._receiver
        if cap is None or receiver is None or self.kind != "video" or not self.layers:
            return
        estimate = hooks.uplink_estimate_bps(receiver)
        bitrate = cap if estimate is None else min(cap, estimate)
        asyncio.ensure_future(hooks.send_remb(receiver, bitrate, [layer.ssrc for layer in self.layers]))

    def downstream_loss(self) -> int:
        """The worst loss (8-bit fraction) any subscriber reported for this track in the last ``LOSS_FRESH`` s."""
        since = time.monotonic() - LOSS_FRESH
        return max((c.feedback.fraction_lost for c in self.consumers if c.feedback.report_at >= since), default=0)

    def _upstream_rtcp(self, packet: Any) -> Any:
        """Report the worst of the uplink's and the subscribers' audio loss to the publisher, and keep the REMB
        under the site's cap.

        An Opus encoder adds in-band FEC according to the loss its receiver reports (browsers read the report's
        fraction lost); a relay that reported only its own uplink would leave a lossy subscriber unprotected.
        """
        if self.remb_cap is not None:
            packet = hooks.cap_remb(packet, self.remb_cap)
        if self.kind == "audio" and isinstance(packet, RtcpRrPacket):
            worst = self.downstream_loss()
            for report in packet.reports:
                report.fraction_lost = max(report.fraction_lost, worst)
        return packet

    def _lost_upstream(self, ssrc: int) -> None:
        """Packets of a layer will not come (an outage's gap, or NACKs that went unanswered): every subscriber of
        that layer is stuck until its next keyframe, so restart them now rather than when each subscriber notices."""
        layer = self._by_ssrc.get(ssrc)
        if layer is None or self._closed:
            return
        for consumer in list(self.consumers):
            if consumer.layer == layer.index:
                consumer.restart()

    def request_keyframe(self, layer: int | None = None) -> None:
        """Ask the publisher for a keyframe of ``layer`` (every layer: None), coalescing bursts of requests."""
        if self.kind != "video" or self._closed:
            return
        for candidate in self.layers:
            index = candidate.index
            if (layer is not None and index != layer) or index in self._pli_scheduled:
                continue
            wait = self._last_pli.get(index, 0.0) + PLI_INTERVAL - time.monotonic()
            if wait <= 0:
                self._send_pli(index)
            else:
                self._pli_scheduled.add(index)
                asyncio.get_running_loop().call_later(wait, self._send_pli, index)

    def _send_pli(self, index: int) -> None:
        self._pli_scheduled.discard(index)
        layer = next((c for c in self.layers if c.index == index), None)
        if self._closed or self._receiver is None or layer is None:
            return
        self._last_pli[index] = time.monotonic()
        asyncio.ensure_future(self._receiver._send_rtcp_pli(layer.ssrc))

    def _new_layer(self, packet: RtpPacket) -> Layer | None:
        """The layer of a packet from an SSRC not seen yet: its rid names it; without one it is the only layer."""
        rid = packet.extensions.rtp_stream_id
        if rid is None:
            if self.simulcast:
                return None  # a simulcast stream whose first packets (with the rid) were lost: wait for a PLI
            index = 0
        elif rid in RIDS:
            index = RIDS.index(rid)
        else:
            return None
        self.layers = [c for c in self.layers if c.index != index]  # a restarted encoding replaces its old SSRC
        self._by_ssrc = {ssrc: c for ssrc, c in self._by_ssrc.items() if c.index != index}
        layer = Layer(index, packet.ssrc, rid)
        self._by_ssrc[packet.ssrc] = layer
        self.layers = sorted([*self.layers, layer], key=lambda c: c.index)
        self.simulcast = len(self.layers) > 1
        return layer

    async def _on_packet(self, receiver: RTCRtpReceiver, packet: RtpPacket) -> None:
        if self._closed or receiver is not self._receiver:  # gone, or a stale upstream
            return
        layer = self._by_ssrc.get(packet.ssrc)
        if layer is None:
            layer = self._new_layer(packet)
            if layer is None:
                return
        new = layer.arrived(packet.sequence_number)
        codec = self._codecs.get(packet.payload_type)
        if codec is None or not packet.payload:  # not negotiated yet, or padding
            return
        self.packets_received += 1
        layer.history[packet.sequence_number % HISTORY_SIZE] = packet
        if new:
            layer.octets += len(packet.payload)
            layer.packets += 1
        key = codec_key(codec)
        ids: Vp8Ids | None = None
        if self.kind == "video":
            if key.startswith("video/h264"):
                keyframe = is_h264_keyframe_start(packet.payload)
            else:
                keyframe = is_vp8_keyframe_start(packet.payload)
                if self.simulcast:
                    ids = vp8_ids(packet.payload)
        else:
            keyframe = True
            level = packet.extensions.audio_level
            if level is not None:
                self.level = 0.8 * self.level + 0.2 * level[1]
        if self.sink is not None:
            self.sink.feed(self, packet, codec)
        ntp = clock.current_ntp_time()
        templates: dict[ExtensionKey, bytes] = {}
        index = layer.index
        for consumer in tuple(self.consumers):
            consumer.forward(packet, index, key, keyframe, ntp, templates, ids)


class _Segment:
    """A stretch of a consumer's output taken from one layer: what its NACKs map back to."""

    __slots__ = ("layer", "out_start", "picture_offset", "seq_offset", "tl0_offset", "ts_offset")

    def __init__(self, out_start: int, layer: int, seq_offset: int, ts_offset: int, picture_offset: int,
                 tl0_offset: int) -> None:
        self.out_start = out_start
        self.layer = layer
        self.seq_offset = seq_offset
        self.ts_offset = ts_offset
        self.picture_offset = picture_offset
        self.tl0_offset = tl0_offset


class Consumer:
    """One producer's stream sent to one participant, on a sender of that participant's peer connection.

    ``target`` is the layer it should forward (None: paused), set by the subscriber's downlink; ``layer`` is the
    one it forwards now, which becomes ``target`` at the target's next keyframe.
    """

    def __init__(self, producer: Producer, transceiver: RTCRtpTransceiver) -> None:
        self.producer = producer
        self.transceiver = transceiver
        self.sender: RTCRtpSender = transceiver.sender
        self.packets_sent = 0
        self.target: int | None = 0
        self.layer: int | None = None
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
        self._last_request = 0.0
        self._seq_offset = 0
        self._ts_offset = random.getrandbits(32)
        self._picture_offset = 0
        self._tl0_offset = 0
        self._start_seq = 0
        self._next_seq = random.getrandbits(15)  # lower half: avoids SRTP rollover trouble at start
        self._last_ts: int | None = None
        self._last_time = 0.0
        self._last_picture: tuple[int, int] | None = None  # (picture id, TL0PICIDX) last sent
        self._frame_open = False  # the newest packet sent did not end its frame (no marker)
        self._restarting = False  # waiting for a keyframe after packets were lost upstream for good (``restart``)
        self._segments: list[_Segment] = []
        self._holes = Holes()
        self._counted: tuple[int, int, float] | None = None  # (highest sequence, packets lost, when written) of the
        # last report counted
        self._counted_at = 0.0
        self._rtx_seq = random.getrandbits(15)
        self._resend_credit = (0.0, 0.0)  # (bits, at): the resend budget's token bucket
        self._sent_times = array("d", bytes(8 * SENT_TIMES))  # by sequence number modulo SENT_TIMES
        self._resynced_at = 0.0  # when it last started forwarding from a keyframe (after a pause, a switch)
        self._send: Callable[[bytes], None] | None = None
        hooks.hook_sender(self.sender, self._on_keyframe_request, self._on_nack)
        self._release_reports: Callable[[], None] | None = hooks.defer_sender_reports(self.sender)
        producer.consumers.add(self)

    @property
    def active(self) -> bool:
        return self._active

    @property
    def ssrc(self) -> int:
        return self._ssrc

    def downlink_loss(self) -> tuple[int, int] | None:
        """(packets the subscriber's downlink lost, packets the relay sent it) over the receiver reports that came
        since the last call; None when none came. A report counts the holes in this stream (packets lost before
        the relay, ``holes.py``) as lost too: a weak publisher must not lower what its subscribers are sent. A
        hole counts as the subscriber saw it when it wrote the report, a round trip before the report arrived:
        one filled since (a late repair) is counted in the next report, which has it."""
        feedback = self.feedback
        if self._counted is None and self._holes.first is not None:  # reports count from the first packet sent
            self._counted = (self._holes.first - 1, 0, 0.0)
        if feedback.report_at <= self._counted_at or self._counted is None:
            return None
        highest, lost_total = self._holes.extend(feedback.highest), feedback.lost_total
        before, before_lost, before_at = self._counted
        if highest <= before:
            self._counted_at = feedback.report_at
            return None  # nothing new received (or an older report, reordered)
        at = feedback.report_at - (feedback.rtt or 0.0)
        self._counted, self._counted_at = (highest, lost_total, at), feedback.report_at
        holes = self._holes.between(before, highest, at)
        refilled = self._holes.filled(before, before_at, at)  # holes of earlier reports that have come since
        sent = highest - before - holes + refilled
        return min(sent, max(0, lost_total - before_lost - holes + refilled)), sent

    def sent(self) -> tuple[int, int]:
        """(payload octets, packets) sent so far, as this stream's sender reports say."""
        return self._report.octets, self._report.packets

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

    def set_target(self, layer: int | None) -> None:
        """Forward ``layer`` from its next keyframe on (asked for now), or pause (None) at once."""
        if layer == self.target:
            return
        self.target = layer
        if layer is None:
            self.layer = None
            self._restarting = False
        elif layer != self.layer and self._active:
            self._ask_keyframes()

    def restart(self) -> None:
        """Packets of the forwarded layer will never come (lost upstream for good): the subscriber cannot decode
        past them, so stop sending what it cannot use and start again from the first keyframe, of any layer up to
        the target."""
        if self.layer is None:
            return
        self.layer = None
        self._restarting = True
        if self._active and self.target is not None:
            self._ask_keyframes()

    def _ask_keyframes(self) -> None:
        """Ask for the target's keyframe and, restarting, the lowest layer's: its keyframe is a few packets, so
        after an outage a lossy uplink delivers it whole a round trip or more before a top layer's (about 12
        packets, all of which arrive at once only 28 % of the time at 10 % loss); the consumer then moves up at
        the target's keyframe."""
        self._last_request = time.monotonic()
        self.producer.request_keyframe(self.target)
        layers = self.producer.layers
        if self._restarting and layers and self.target is not None and layers[0].index < self.target:
            self.producer.request_keyframe(layers[0].index)

    def _on_keyframe_request(self) -> None:
        wanted = self.layer if self.layer is not None else self.target
        if wanted is not None:
            self.producer.request_keyframe(wanted)

    def _want_keyframe(self) -> None:
        now = time.monotonic()
        if now - self._last_request > KEYFRAME_RETRY:
            self._ask_keyframes()

    def forward(
        self,
        packet: RtpPacket,
        layer: int,
        codec_key_: str,
        keyframe: bool,
        ntp: int,
        templates: dict[ExtensionKey, bytes],
        ids: Vp8Ids | None,
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
            self.layer = None
        if layer != self.layer:
            # restarting, the first keyframe of any layer up to the target starts it again; otherwise only the
            # target's keyframe switches to the target
            startable = self._restarting and self.target is not None and layer < self.target
            if layer != self.target and not startable:
                return
            if not keyframe:
                if layer == self.target:
                    self._want_keyframe()
                return
            self._resync(packet, layer, ids)
        elif self.target != layer:  # switching: carry on with this layer until the target's keyframe
            self._want_keyframe()
        if (seq - self._start_seq) & 0xFFFF >= 0x8000:
            return  # older than our first forwarded packet of this layer
        out_seq = (seq + self._seq_offset) & 0xFFFF
        out_ts = (packet.timestamp + self._ts_offset) & 0xFFFFFFFF
        now = time.monotonic()
        newest = (out_seq - self._next_seq) & 0xFFFF < 0x8000
        if newest:
            self._next_seq = (out_seq + 1) & 0xFFFF
            self._frame_open = self.producer.kind == "video" and not packet.marker
            self._last_ts = out_ts
            self._last_time = now
        tmpl = templates.get(self._ext_key)
        if tmpl is None:
            tmpl = templates[self._ext_key] = template(packet, self._ext_key, (ntp >> 14) & 0xFFFFFF)
        if ids is None:
            data = stamp(tmpl, packet.marker, payload_type, out_seq, out_ts, self._ssrc)
        else:
            picture, tl0 = (ids[1] + self._picture_offset) & ids[2], (ids[4] + self._tl0_offset) & 0xFF
            if newest:
                self._last_picture = (picture, tl0)
            data = stamp_renumbered(tmpl, len(packet.payload), packet.marker, payload_type, out_seq, out_ts,
                                    self._ssrc, ids, picture, tl0)
        self._report.sent(ntp, out_ts, len(packet.payload))
        self._holes.sent(out_seq, now)
        self._sent_times[out_seq & (SENT_TIMES - 1)] = now
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

    def _resync(self, packet: RtpPacket, layer: int, ids: Vp8Ids | None) -> None:
        """Continue this consumer's sequence, timeline and picture ids from a keyframe (of a new layer)."""
        self.layer = layer
        self._resynced_at = time.monotonic()
        self._restarting = False
        self._ext_key = hooks.extension_ids(self._transport)  # configured once the sender has started
        if self._frame_open:
            # the old layer's last frame was cut short (its tail lost upstream, or not yet arrived): leave a
            # sequence gap so the subscriber sees it incomplete and drops it, rather than decode a truncated frame
            # glued to the keyframe (a NACK for the gap maps back to that frame's next packet, if it comes)
            self._next_seq = (self._next_seq + 1) & 0xFFFF
            self._frame_open = False
        self._start_seq = packet.sequence_number
        self._seq_offset = (self._next_seq - packet.sequence_number) & 0xFFFF
        if self._last_ts is not None:
            elapsed = max(1, int((time.monotonic() - self._last_time) * self._clock_rate))
            self._ts_offset = (self._last_ts + elapsed - packet.timestamp) & 0xFFFFFFFF
        if ids is not None and self._last_picture is not None:
            self._picture_offset = (self._last_picture[0] + 1 - ids[1]) & ids[2]
            self._tl0_offset = (self._last_picture[1] + 1 - ids[4]) & 0xFF
        segment = _Segment(self._next_seq, layer, self._seq_offset, self._ts_offset, self._picture_offset,
                           self._tl0_offset)
        self._segments = [segment, *self._segments[: SEGMENTS_KEPT - 1]]

    def _sent_into_outage(self, sent_at: float, now: float) -> bool:
        """Whether a packet sent at ``sent_at`` went out while the subscriber's link was cut: no receiver report
        came within ``OUTAGE_SILENCE`` around it (nor a restart from a keyframe before it). Judged from the reports on
        either side, since the first after the cut can come before or after the subscriber's NACK."""
        before = self._resynced_at if self._resynced_at <= sent_at else 0.0
        after = now
        for at in self.feedback.reports:
            if at <= sent_at:
                before = max(before, at)
            else:
                after = min(after, at)
        return before > 0 and after - before > OUTAGE_SILENCE

    def _spend_on_resend(self, octets: int, now: float) -> bool:
        """Take a resend's bits from the budget (``RESEND_SHARE`` of the layer's rate); False when it is spent. A
        congested link loses packets faster than resends can repair them: unbounded, the resends congest it more."""
        layer = next((c for c in self.producer.layers if c.index == self.layer), None)
        rate = max(RESEND_MIN_BPS, RESEND_SHARE * (layer.rate if layer is not None else 0.0))
        bits, at = self._resend_credit
        bits = min(rate * RESEND_BURST, bits + rate * (now - at))
        if bits < octets * 8:
            self._resend_credit = (bits, now)
            return False
        self._resend_credit = (bits - octets * 8, now)
        return True

    async def _on_nack(self, out_seq: int) -> None:
        """Answer a consumer's NACK from the producer's history, as RTX when negotiated, within the resend budget.
        aiortc's receiver NACKs every packet still missing each time a new one goes missing: on a congested link,
        resending them all each time multiplied the traffic (4 Mbit/s into a 250 kbit/s link in a test).

        Video sent while the subscriber's link was cut (``_sent_into_outage``) is not resent: seconds old, of no
        use in a live call, and more than the returning link carries at once (on EDGE, 36 kB of resends in 0.1 s
        into 240 kbit/s: 138 packets dropped at its queue, then a 2 s freeze). The subscriber gets a keyframe."""
        if not self._active or self.layer is None:
            return
        now = time.monotonic()
        if self.producer.kind == "video" and self._sent_into_outage(self._sent_times[out_seq & (SENT_TIMES - 1)], now):
            self._want_keyframe()
            return
        segment = next((s for s in self._segments if (out_seq - s.out_start) & 0xFFFF < 0x8000), None)
        if segment is None:
            return
        packet = self.producer.history(segment.layer, (out_seq - segment.seq_offset) & 0xFFFF)
        if packet is None:
            return
        codec = self.producer._codecs.get(packet.payload_type)
        payload_type = self._payload_types.get(codec_key(codec)) if codec is not None else None
        if payload_type is None:
            return
        out_ts = (packet.timestamp + segment.ts_offset) & 0xFFFFFFFF
        ntp = clock.current_ntp_time()
        if not hooks.is_connected(self._transport):
            return
        payload = packet.payload
        ids = vp8_ids(payload) if self.producer.simulcast and codec_key(codec) == "video/vp8" else None
        if ids is not None:
            renumbered = bytearray(payload)
            picture, tl0 = (ids[1] + segment.picture_offset) & ids[2], (ids[4] + segment.tl0_offset) & 0xFF
            renumber_vp8(renumbered, 0, ids, picture, tl0)
            payload = bytes(renumbered)
        if not self._spend_on_resend(len(payload) + PACKET_OVERHEAD + 2, now):
            return
        rtx_type = self._rtx_types.get(payload_type)
        if rtx_type is None:
            data = stamp(template(packet, self._ext_key, (ntp >> 14) & 0xFFFFFF, payload=payload), packet.marker,
                         payload_type, out_seq, out_ts, self._ssrc)
        else:
            tmpl = template(packet, self._ext_key, (ntp >> 14) & 0xFFFFFF,
                            payload=struct.pack("!H", out_seq) + payload)
            data = stamp(tmpl, packet.marker, rtx_type, self._rtx_seq, out_ts, self._rtx_ssrc)
            self._rtx_seq = (self._rtx_seq + 1) & 0xFFFF
        self._transmit(data)
