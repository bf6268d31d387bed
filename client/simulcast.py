"""A simulcast publisher for tests and site probes: one camera sent as several VP8 encodings, as Chromium does.

When the server's offer asks for simulcast (``media/simulcast.py``), Chromium sends each encoding on its own
SSRC, names it by the rid header extension, and drops its upper encodings when the server's REMB says its uplink
cannot carry them. aiortc sends one encoding per track, so this sender does that itself on the transceiver's
transport: it scales each frame, encodes it with libvpx at the encoding's bitrate, packetizes it (RFC 7741, with
picture id and TL0PICIDX as Chromium sends them), answers PLI with a keyframe of that encoding and NACK from a
short history, and follows its bandwidth estimate as Chromium does: the smaller of the server's REMB and a
loss-based estimate from the server's receiver reports (GCC's loss controller: above 10 % loss it drops to what was
sent × (1 − loss/2), below 2 % it grows by 8 % a report). Encodings are kept from the lowest up while they fit.
"""

from __future__ import annotations

import asyncio
import fractions
import logging
import random
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import av
from aiortc import MediaStreamTrack, RTCRtpTransceiver, clock
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtp import (
    RTCP_PSFB_APP,
    RTCP_PSFB_FIR,
    RTCP_PSFB_PLI,
    RTCP_RTPFB_NACK,
    RtcpPsfbPacket,
    RtcpRrPacket,
    RtcpRtpfbPacket,
    RtpPacket,
    unpack_remb_fci,
)

from media import hooks

logger = logging.getLogger(__name__)

PAYLOAD_MAX = 1200
HISTORY = 512
TIME_BASE = fractions.Fraction(1, 90000)


@dataclass(frozen=True)
class Encoding:
    rid: str
    scale: int  # the source's width and height are divided by this
    kbps: int


# What Chromium's layers look like for a 640×480 camera (160×120, 320×240, 640×480), lighter at the top.
DEFAULT_ENCODINGS = (Encoding("q", 4, 60), Encoding("h", 2, 180), Encoding("f", 1, 500))


class _Stream:
    """One encoding's RTP state: SSRC, numbering, encoder and history."""

    def __init__(self, encoding: Encoding) -> None:
        self.encoding = encoding
        self.ssrc = random.getrandbits(32)
        self.seq = random.getrandbits(15)
        self.ts_offset = random.getrandbits(32)
        self.picture_id = random.getrandbits(15)
        self.tl0 = random.getrandbits(8)
        self.codec: Any = None
        self.keyframe = True
        self.active = True
        self.history: dict[int, RtpPacket] = {}
        self.frames = 0

    def encode(self, frame: av.VideoFrame) -> bytes:
        width = max(16, frame.width // self.encoding.scale // 2 * 2)
        height = max(16, frame.height // self.encoding.scale // 2 * 2)
        if self.codec is None:
            self.codec = av.CodecContext.create("libvpx", "w")
            self.codec.width, self.codec.height = width, height
            self.codec.pix_fmt = "yuv420p"
            self.codec.time_base = TIME_BASE
            self.codec.bit_rate = self.encoding.kbps * 1000
            self.codec.gop_size = 3000
            self.codec.qmin, self.codec.qmax = 2, 56
            rate = str(self.encoding.kbps * 1000)
            self.codec.options = {"bufsize": rate, "minrate": rate, "maxrate": rate, "cpu-used": "-6",
                                  "deadline": "realtime", "lag-in-frames": "0", "undershoot-pct": "100",
                                  "overshoot-pct": "15", "static-thresh": "1", "partitions": "0"}
        scaled = frame.reformat(width=width, height=height, format="yuv420p")
        scaled.pts, scaled.time_base = frame.pts, frame.time_base
        if self.keyframe:
            scaled.pict_type = av.video.frame.PictureType.I
            self.keyframe = False
        return b"".join(bytes(p) for p in self.codec.encode(scaled))

    def packetize(self, data: bytes, timestamp: int) -> list[RtpPacket]:
        packets = []
        for start in range(0, len(data), PAYLOAD_MAX):
            first = start == 0
            descriptor = struct.pack("!BBHB", 0x80 | (0x10 if first else 0), 0xC0, 0x8000 | self.picture_id, self.tl0)
            packet = RtpPacket(payload_type=0, sequence_number=self.seq, timestamp=(timestamp + self.ts_offset)
                               & 0xFFFFFFFF, ssrc=self.ssrc, marker=int(start + PAYLOAD_MAX >= len(data)),
                               payload=descriptor + data[start:start + PAYLOAD_MAX])
            self.seq = (self.seq + 1) & 0xFFFF
            packets.append(packet)
        self.picture_id = (self.picture_id + 1) & 0x7FFF
        self.tl0 = (self.tl0 + 1) & 0xFF
        self.frames += 1
        return packets


class SimulcastVideo:
    """Sends ``source`` as ``encodings`` on one publishing transceiver (``start`` once it is negotiated)."""

    def __init__(self, source: MediaStreamTrack, encodings: Sequence[Encoding] = DEFAULT_ENCODINGS,
                 follow_remb: bool = True) -> None:
        """``follow_remb=False``: only ``set_max_bitrate`` turns encodings off (a test's own choice of layers), not
        the REMB nor the loss the server reports."""
        hooks.negotiate_simulcast_extensions()  # our answer must accept the rid extension the server offers
        self.source = source
        self.follow_remb = follow_remb
        self.streams = [_Stream(e) for e in encodings]
        self.remb: int | None = None
        self.loss_estimate: int | None = None  # bit/s, from the receiver reports' loss (None: no loss seen yet)
        self.max_bitrate: int | None = None  # a sender-side limit, as RTCRtpSender.setParameters would set
        self._transport: RTCDtlsTransport | None = None
        self._mid: str | None = None
        self._payload_type = 96
        self._task: asyncio.Task[None] | None = None

    @property
    def active_rids(self) -> list[str]:
        return [s.encoding.rid for s in self.streams if s.active]

    def start(self, transceiver: RTCRtpTransceiver) -> None:
        """Send on ``transceiver``'s transport, as its mid, with its negotiated VP8 payload type."""
        transport = transceiver.sender.transport
        vp8 = [c for c in hooks.negotiated_codecs(transceiver) if c.mimeType.lower() == "video/vp8"]
        if vp8:
            self._payload_type = vp8[0].payloadType
        self._mid = transceiver.mid
        if transport is not self._transport:
            self._transport = transport
            for stream in self.streams:
                hooks.listen_rtcp(transport, stream.ssrc, lambda packet, s=stream: self._on_rtcp(s, packet))
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._run())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            frame = await self.source.recv()
            transport = self._transport
            if transport is None or transport.state != "connected":
                continue
            streams = [s for s in self.streams if s.active]
            encoded = await loop.run_in_executor(None, lambda: [s.encode(frame) for s in streams])
            timestamp = int(frame.pts * frame.time_base / TIME_BASE)
            for stream, data in zip(streams, encoded, strict=True):
                if data:
                    await self._send(transport, stream, data, timestamp)

    async def _send(self, transport: RTCDtlsTransport, stream: _Stream, data: bytes, timestamp: int) -> None:
        for packet in stream.packetize(data, timestamp):
            packet.payload_type = self._payload_type
            packet.extensions.mid = self._mid
            packet.extensions.rtp_stream_id = stream.encoding.rid
            packet.extensions.abs_send_time = (clock.current_ntp_time() >> 14) & 0xFFFFFF
            stream.history[packet.sequence_number % HISTORY] = packet
            try:
                await hooks.send_rtp(transport, packet)
            except ConnectionError:  # the connection is being replaced: carry on with the next frame
                return

    async def _on_rtcp(self, stream: _Stream, packet: Any) -> None:
        if isinstance(packet, RtcpPsfbPacket) and packet.fmt in (RTCP_PSFB_PLI, RTCP_PSFB_FIR):
            stream.keyframe = True
        elif isinstance(packet, RtcpRtpfbPacket) and packet.fmt == RTCP_RTPFB_NACK:
            for seq in packet.lost:
                lost = stream.history.get(seq % HISTORY)
                if lost is not None and lost.sequence_number == seq and self._transport is not None:
                    try:
                        await hooks.send_rtp(self._transport, lost)
                    except ConnectionError:
                        return
        elif isinstance(packet, RtcpRrPacket) and stream is self.streams[0]:  # one report covers every stream
            losses = [r.fraction_lost / 256 for r in packet.reports
                      if any(s.active and s.ssrc == r.ssrc for s in self.streams)]
            if losses:
                self._on_loss(max(losses))
        elif isinstance(packet, RtcpPsfbPacket) and packet.fmt == RTCP_PSFB_APP:
            try:
                bitrate, _ = unpack_remb_fci(packet.fci)
            except ValueError:
                return
            self.remb = int(bitrate)
            self._choose_encodings()

    def _on_loss(self, loss: float) -> None:
        sending = sum(s.encoding.kbps * 1000 for s in self.streams if s.active)
        if loss > 0.10:
            self.loss_estimate = int(min(self.loss_estimate or sending, sending) * (1 - loss / 2))
        elif loss < 0.02 and self.loss_estimate is not None:
            self.loss_estimate = int(self.loss_estimate * 1.08)
            if self.loss_estimate > 1.5 * sum(s.encoding.kbps * 1000 for s in self.streams):
                self.loss_estimate = None
        else:
            return
        self._choose_encodings()

    def set_max_bitrate(self, bitrate: int | None) -> None:
        """Limit what is sent whatever the REMB says (None: no limit), from now on."""
        self.max_bitrate = bitrate
        self._choose_encodings()

    def _choose_encodings(self) -> None:
        """Keep encodings from the lowest up while they fit (the lowest always), as Chromium does. Chromium keeps a
        top layer on from about a quarter of its bitrate and sends it at what is left; these encoders send each
        layer at its full bitrate, so a layer stays on only while it fits whole: kept on at a quarter, the half
        layer overfilled a 200 kbit/s uplink by its own bitrate and the queue dropped its keyframes."""
        estimates = (self.remb, self.loss_estimate) if self.follow_remb else ()
        limits = [b for b in (*estimates, self.max_bitrate) if b is not None]
        bitrate = min(limits) if limits else 1 << 40
        below = 0
        for i, stream in enumerate(self.streams):
            active = i == 0 or below + stream.encoding.kbps * 1000 <= bitrate
            below += stream.encoding.kbps * 1000
            if active and not stream.active:
                stream.keyframe = True  # a resumed encoding starts with a keyframe
            stream.active = active
