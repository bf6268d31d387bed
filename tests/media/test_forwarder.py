"""Producer/Consumer logic on real aiortc transceivers (no network): what the relay tells publishers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from aiortc import RTCBundlePolicy, RTCConfiguration, RTCPeerConnection, RTCRtpTransceiver
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import (
    RTCP_PSFB_PLI,
    RTCP_RTPFB_NACK,
    RtcpPsfbPacket,
    RtcpReceiverInfo,
    RtcpRrPacket,
    RtcpRtpfbPacket,
    RtpPacket,
)

from media import nack
from media.forwarder import (
    LOSS_FRESH,
    OUTAGE_SILENCE,
    PACKET_OVERHEAD,
    RESEND_BURST,
    RESEND_MIN_BPS,
    Consumer,
    Producer,
)
from media.transport import ForwardedTrack


@pytest.fixture
async def pc() -> AsyncIterator[RTCPeerConnection]:
    connection = RTCPeerConnection(RTCConfiguration(bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
    yield connection
    await connection.close()


def receiver_report(ssrc: int, fraction_lost: int) -> RtcpRrPacket:
    info = RtcpReceiverInfo(ssrc=ssrc, fraction_lost=fraction_lost, packets_lost=0, highest_sequence=1, jitter=0,
                            lsr=0, dlsr=0)
    return RtcpRrPacket(ssrc=1, reports=[info])


async def test_publisher_hears_the_worst_audio_loss_of_its_subscribers(pc: RTCPeerConnection) -> None:
    upstream: list[RtcpRrPacket] = []

    async def capture(packet: RtcpRrPacket) -> None:
        upstream.append(packet)

    producers = {}
    for kind in ("audio", "video"):
        published = pc.addTransceiver(kind, direction="recvonly")
        published.receiver._send_rtcp = capture  # type: ignore[method-assign]  # what would go to the publisher
        producers[kind] = Producer("publisher", kind)
        producers[kind].attach(published)
    consumers = {kind: [Consumer(producers[kind], pc.addTransceiver(ForwardedTrack(kind), direction="sendonly"))
                        for _ in range(2)] for kind in ("audio", "video")}

    # two subscribers report 5 % and 20 % loss on the audio they receive (their receiver reports reach our senders)
    for consumer, lost in zip(consumers["audio"], (13, 51), strict=True):
        await consumer.sender._handle_rtcp_packet(receiver_report(consumer.sender._ssrc, lost))
    await consumers["video"][0].sender._handle_rtcp_packet(receiver_report(consumers["video"][0].sender._ssrc, 200))
    audio_receiver = producers["audio"]._receiver
    video_receiver = producers["video"]._receiver
    assert audio_receiver is not None and video_receiver is not None
    await audio_receiver._send_rtcp(receiver_report(1234, 3))
    await video_receiver._send_rtcp(receiver_report(5678, 3))
    # audio: the worst subscriber's loss; video keeps its own (its publisher adapts to REMB instead)
    assert [p.reports[0].fraction_lost for p in upstream] == [51, 3]

    # a subscriber that has not reported for a while no longer counts; the uplink's own loss always does
    consumers["audio"][1].feedback.report_at = time.monotonic() - LOSS_FRESH - 1
    await audio_receiver._send_rtcp(receiver_report(1234, 3))
    await audio_receiver._send_rtcp(receiver_report(1234, 100))
    assert [p.reports[0].fraction_lost for p in upstream[2:]] == [13, 100]


def test_a_layers_rate_and_activity_count_new_packets_only() -> None:
    """Repairs (answers to NACKs) neither make a layer's bitrate nor keep it active: after an outage its publisher
    answers a burst of old packets, and a stopped layer still gets answers for its last ones."""
    from media.forwarder import Layer

    layer = Layer(2, 1234, "f")
    start = time.monotonic()

    def receive(seqs: range | tuple[int, ...]) -> None:
        for seq in seqs:
            if layer.arrived(seq):
                layer.octets += 1000
                layer.packets += 1

    receive(range(65500, 65536))
    receive(range(0, 14))  # across the wrap: 50 new packets in a second
    layer.measure(start + 1)
    assert layer.active and layer.rate == pytest.approx(50 * (1000 + PACKET_OVERHEAD) * 8, rel=1e-3)
    receive((20, 21, 22, *range(14, 20), *range(65480, 65500), 22))  # a gap filled late, old ones, a duplicate
    layer.measure(start + 2)
    assert layer.rate == pytest.approx((0.5 * 50 + 0.5 * 3) * (1000 + PACKET_OVERHEAD) * 8, rel=1e-3)
    receive((10, 11, 10))  # the publisher stopped the layer; its answers to NACKs still come
    layer.measure(start + 3)
    assert not layer.active
    receive((23,))
    layer.measure(start + 4)
    assert layer.active


async def test_resends_to_a_consumer_stay_within_their_budget(pc: RTCPeerConnection) -> None:
    """A congested subscriber NACKs faster than resends can repair: they may add at most a share of the layer's
    bitrate (a floor for audio and paused layers), in bursts of ``RESEND_BURST`` seconds of it."""
    producer = Producer("publisher", "video")
    producer.attach(pc.addTransceiver("video", direction="recvonly"))
    consumer = Consumer(producer, pc.addTransceiver(ForwardedTrack("video"), direction="sendonly"))
    now = time.monotonic()
    burst = RESEND_MIN_BPS * RESEND_BURST / 8  # bytes: no layer forwarded yet, so the floor
    sent = 0
    while consumer._spend_on_resend(1000, now):
        sent += 1000
    assert burst - 1000 < sent <= burst
    assert not consumer._spend_on_resend(1000, now + 0.01)
    assert consumer._spend_on_resend(1000, now + 1000 * 8 / RESEND_MIN_BPS + 0.01)  # refilled at the rate


async def test_packets_lost_for_good_upstream_ask_the_publisher_for_a_keyframe(pc: RTCPeerConnection) -> None:
    """A gap no NACK can fill (here an outage's: nothing arrived for over ``STALE_GAP``) leaves every subscriber of
    the layer stuck until a keyframe: the relay restarts them from the next one and asks for it at once, when
    someone watches the layer."""
    transceiver = pc.addTransceiver("video", direction="recvonly")
    receiver = transceiver.receiver
    receiver._RTCRtpReceiver__codecs[96] = RTCRtpCodecParameters(  # type: ignore[attr-defined]
        mimeType="video/VP8", clockRate=90000, payloadType=96)
    producer = Producer("publisher", "video")
    producer.attach(transceiver)
    consumer = Consumer(producer, pc.addTransceiver(ForwardedTrack("video"), direction="sendonly"))
    plis: list[int] = []

    async def pli(media_ssrc: int) -> None:
        plis.append(media_ssrc)

    receiver._send_rtcp_pli = pli  # type: ignore[method-assign]

    def packet(seq: int) -> RtpPacket:
        return RtpPacket(payload_type=96, sequence_number=seq, timestamp=seq * 3000, ssrc=7, payload=b"\x10\x00\x00")

    for seq in (1, 2, 3, 5, 4):  # an ordinary loss, repaired
        await receiver._handle_rtp_packet(packet(seq), 0)
    await asyncio.sleep(nack.STALE_GAP + 0.1)
    await receiver._handle_rtp_packet(packet(80), 0)
    await asyncio.sleep(0.01)
    assert plis == []  # nobody forwards the layer: no keyframe is asked for
    await asyncio.sleep(nack.RTT_INITIAL * nack.RETRY_MARGIN + 0.1)  # the outage's packets, asked once, given up
    consumer.activate()
    consumer.layer = 0  # a subscriber watches it
    await asyncio.sleep(nack.STALE_GAP + 0.1)
    await receiver._handle_rtp_packet(packet(160), 0)
    await asyncio.sleep(0.01)
    assert plis == [7]
    assert consumer.layer is None  # it restarts at the keyframe: what follows the hole is of no use to it
    nack.of(receiver).stop()  # type: ignore[union-attr]


def wired_consumer(pc: RTCPeerConnection) -> tuple[RTCRtpTransceiver, Consumer, list[object], list[bytes]]:
    """A VP8 producer's receiving transceiver and a connected consumer of it, with what the producer sends its
    publisher (RTCP) and what the consumer sends its subscriber (the wire itself left out: packets go to lists)."""
    from aiortc.rtcdtlstransport import State as DtlsState

    transceiver = pc.addTransceiver("video", direction="recvonly")
    vp8 = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96)
    transceiver.receiver._RTCRtpReceiver__codecs[96] = vp8  # type: ignore[attr-defined]
    upstream: list[object] = []

    async def to_publisher(packet: object) -> None:
        upstream.append(packet)

    transceiver.receiver._send_rtcp = to_publisher  # type: ignore[method-assign]  # NACKs, keyframe requests
    producer = Producer("publisher", "video")
    producer.attach(transceiver)
    transceiver._codecs = [vp8]  # as negotiated
    producer.negotiated(transceiver)
    consumer = Consumer(producer, pc.addTransceiver(ForwardedTrack("video"), direction="sendonly"))
    consumer.transceiver._codecs = [vp8]
    consumer.activate()
    consumer.sender.transport._state = DtlsState.CONNECTED
    wire: list[bytes] = []
    consumer._send = wire.append
    return transceiver, consumer, upstream, wire


async def test_a_consumer_counts_only_the_loss_on_its_subscribers_link(pc: RTCPeerConnection) -> None:
    """The loss a subscriber's downlink estimate is fed: what its receiver reports, less the packets that never
    reached the relay (holes in the stream), counted as they stood when the report was written."""
    transceiver, consumer, upstream, wire = wired_consumer(pc)

    def packet(seq: int) -> RtpPacket:
        return RtpPacket(payload_type=96, sequence_number=seq, timestamp=seq * 3000, ssrc=7, payload=b"\x10\x00\x00")

    for seq in (*range(100, 110), *range(112, 120)):  # 110 and 111 lost upstream
        await transceiver.receiver._handle_rtp_packet(packet(seq), 0)
    assert len(wire) == 18
    first = int.from_bytes(wire[0][2:4], "big")

    async def report(highest: int, lost: int) -> None:
        info = RtcpReceiverInfo(ssrc=consumer.ssrc, fraction_lost=0, packets_lost=lost, highest_sequence=highest,
                                jitter=0, lsr=0, dlsr=0)
        await consumer.sender._handle_rtcp_packet(RtcpRrPacket(ssrc=1, reports=[info]))

    await report((first + 19) & 0xFFFF, 3)  # up to the newest: the two holes and one of its own lost
    assert consumer.downlink_loss() == (1, 18)
    assert consumer.downlink_loss() is None  # no new report
    await transceiver.receiver._handle_rtp_packet(packet(110), 0)  # a hole filled (the publisher's repair)
    await transceiver.receiver._handle_rtp_packet(packet(120), 0)
    await report((first + 20) & 0xFFFF, 1)  # the repair arrived; nothing else lost
    assert consumer.downlink_loss() == (0, 2)


async def test_a_subscriber_back_from_an_outage_gets_a_keyframe_not_the_outages_packets(
    pc: RTCPeerConnection,
) -> None:
    """Video sent while a subscriber sent no receiver report for ``OUTAGE_SILENCE`` (its link was cut) is not
    resent when it NACKs it after the link returns, whether or not its first report came first: the relay asks the
    publisher for a keyframe instead. What it was sent before the cut, and after its link returned, is resent."""
    transceiver, consumer, upstream, wire = wired_consumer(pc)
    keyframe = b"\x10\x00\x00\x9d\x01\x2a"  # VP8 descriptor, then a key frame's start code

    async def publish(seqs: range) -> None:
        for seq in seqs:
            payload = keyframe if seq == 100 else b"\x10\x00\x00\x01"
            await transceiver.receiver._handle_rtp_packet(
                RtpPacket(payload_type=96, sequence_number=seq, timestamp=seq * 3000, ssrc=7, payload=payload), 0)

    async def nack(offset: int) -> int:
        """How many packets the relay resent for a NACK of the ``offset``-th packet it sent."""
        before = len(wire)
        lost = (first + offset) & 0xFFFF
        await consumer.sender._handle_rtcp_packet(
            RtcpRtpfbPacket(fmt=RTCP_RTPFB_NACK, ssrc=1, media_ssrc=consumer.ssrc, lost=[lost]))
        return len(wire) - before

    async def report() -> None:
        info = RtcpReceiverInfo(ssrc=consumer.ssrc, fraction_lost=0, packets_lost=0,
                                highest_sequence=(first + 9) & 0xFFFF, jitter=0, lsr=0, dlsr=0)
        await consumer.sender._handle_rtcp_packet(RtcpRrPacket(ssrc=1, reports=[info]))

    await publish(range(100, 110))
    first = int.from_bytes(wire[0][2:4], "big")
    await report()
    assert await nack(5) == 1  # a link that reports: repaired
    await asyncio.sleep(OUTAGE_SILENCE / 2)
    await publish(range(110, 120))  # into the cut link: no report comes
    await asyncio.sleep(OUTAGE_SILENCE / 2 + 0.2)
    upstream.clear()
    assert await nack(12) == 0  # back, asking for the outage's packets before reporting
    await asyncio.sleep(0.05)
    assert any(isinstance(p, RtcpPsfbPacket) and p.fmt == RTCP_PSFB_PLI and p.media_ssrc == 7 for p in upstream)
    await report()
    assert await nack(15) == 0  # a report came first: still the outage's
    await publish(range(120, 125))
    assert await nack(22) == 1  # sent since the link returned: repaired
    assert await nack(6) == 1  # sent before the cut: repaired
