"""The aiortc/aioice internals the relay relies on. If an upgrade moves any of them, these fail first."""

from __future__ import annotations

import asyncio
import struct
import time

import aioice.ice
import aiortc
import pytest
from aiortc import RTCBundlePolicy, RTCConfiguration, RTCPeerConnection, RTCRtpTransceiver
from aiortc.rtp import RtpPacket

from media import hooks
from media.transport import ForwardedTrack
from support import wait_for


def test_pinned_versions_are_installed() -> None:
    hooks.check_versions()
    assert aiortc.__version__ == hooks.PINNED_AIORTC


async def test_receiver_and_sender_expose_what_the_hooks_replace() -> None:
    pc = RTCPeerConnection(RTCConfiguration(bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
    try:
        published = pc.addTransceiver("video", direction="recvonly")
        consumer = pc.addTransceiver(ForwardedTrack("video"), direction="sendonly")
        seen = []

        async def on_packet(packet: object) -> None:
            seen.append(packet)

        hooks.tap_receiver(published.receiver, on_packet)  # type: ignore[arg-type]
        assert isinstance(published.receiver._RTCRtpReceiver__jitter_buffer, hooks._PacketTap)  # type: ignore[attr-defined]

        calls = []
        hooks.hook_sender(consumer.sender, lambda: calls.append("pli"), on_packet)  # type: ignore[arg-type]
        consumer.sender._send_keyframe()
        assert calls == ["pli"]

        report = hooks.SenderReportState(consumer.sender)
        report.sent(ntp_timestamp=123, rtp_timestamp=456, payload_bytes=1000)
        assert (report.packets, report.octets) == (1, 1000)
        assert consumer.sender._RTCRtpSender__rtp_timestamp == 456  # type: ignore[attr-defined]
        assert hooks.extension_ids(consumer.sender.transport) == (None, None)
        assert hooks.negotiated_codecs(consumer) == []
    finally:
        await pc.close()


def test_missing_internals_fail_loudly() -> None:
    class NotAReceiver:
        async def _handle_rtp_packet(self, packet: object, arrival_time_ms: int) -> None: ...

    async def on_packet(packet: object) -> None: ...

    with pytest.raises(hooks.IncompatibleAiortc):
        hooks.tap_receiver(NotAReceiver(), on_packet)  # type: ignore[arg-type]


def test_host_addresses_can_be_restricted() -> None:
    original = aioice.ice.get_host_addresses
    try:
        hooks.restrict_host_addresses(["127.0.0.1", "::1"])
        assert aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=False) == ["127.0.0.1"]
        assert aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=True) == ["127.0.0.1", "::1"]
    finally:
        aioice.ice.get_host_addresses = original


async def test_host_candidates_bind_inside_the_configured_udp_range() -> None:
    original = aioice.ice.asyncio
    try:
        hooks.restrict_udp_ports(41000, 41009)
        pcs = [RTCPeerConnection(RTCConfiguration(iceServers=[])) for _ in range(3)]
        for pc in pcs:
            pc.addTransceiver("audio")
            await pc.setLocalDescription(await pc.createOffer())
        ports = {int(line.split()[5]) for pc in pcs for line in pc.localDescription.sdp.splitlines()
                 if line.startswith("a=candidate:")}
        assert ports and all(41000 <= p <= 41009 for p in ports)
        assert len(ports) == 3
        for pc in pcs:
            await pc.close()
    finally:
        aioice.ice.asyncio = original


async def test_udp_sender_protects_and_sends_on_the_nominated_pair() -> None:
    """Two aiortc peers on loopback: the fast path's packets are decrypted and counted by the other side."""
    a = RTCPeerConnection(RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
    b = RTCPeerConnection(RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
    hooks.restrict_host_addresses(["127.0.0.1"])
    try:
        sender = a.addTransceiver(ForwardedTrack("video"), direction="sendonly")
        await a.setLocalDescription(await a.createOffer())
        await b.setRemoteDescription(a.localDescription)
        await b.setLocalDescription(await b.createAnswer())
        await a.setRemoteDescription(b.localDescription)
        transport = sender.sender.transport
        for _ in range(100):
            if transport.state == "connected" and b.getReceivers()[0].transport.state == "connected":
                break
            await asyncio.sleep(0.05)
        send = hooks.udp_sender(transport)
        assert send is not None
        remote = hooks.nominated_remote_address(transport)
        local_of_b = b.getReceivers()[0].transport.transport._connection._nominated[1].local_candidate
        assert remote == (local_of_b.host, local_of_b.port)
        received = b.getReceivers()[0].transport._RTCDtlsTransport__rx_packets  # type: ignore[attr-defined]
        sent = transport._RTCDtlsTransport__tx_packets  # type: ignore[attr-defined]
        header = bytes([0x80, 96, 0, 1, 0, 0, 0, 1]) + sender.sender._ssrc.to_bytes(4, "big")
        for seq in range(10):
            send(header[:2] + seq.to_bytes(2, "big") + header[4:] + b"payload")
        await asyncio.sleep(0.2)
        assert transport._RTCDtlsTransport__tx_packets == sent + 10  # type: ignore[attr-defined]
        assert b.getReceivers()[0].transport._RTCDtlsTransport__rx_packets >= received + 10  # type: ignore[attr-defined]
    finally:
        await a.close()
        await b.close()


async def connected_pair() -> tuple[RTCPeerConnection, RTCPeerConnection, RTCRtpTransceiver]:
    a = RTCPeerConnection(RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
    b = RTCPeerConnection(RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
    sender = a.addTransceiver(ForwardedTrack("video"), direction="sendonly")
    return a, b, sender


async def negotiate(a: RTCPeerConnection, b: RTCPeerConnection) -> None:
    await a.setLocalDescription(await a.createOffer())
    await b.setRemoteDescription(a.localDescription)
    await b.setLocalDescription(await b.createAnswer())
    await a.setRemoteDescription(b.localDescription)
    for _ in range(100):
        if a.connectionState == "connected" and b.connectionState == "connected":
            return
        await asyncio.sleep(0.05)
    raise AssertionError("no connection")


async def test_sender_reports_wait_for_the_first_packet_and_stop_cleanly() -> None:
    a, b, sender = await connected_pair()
    try:
        release = hooks.defer_sender_reports(sender.sender)
        await negotiate(a, b)
        receiver = b.getReceivers()[0]
        await asyncio.sleep(2.5)  # aiortc reports every 0.5-1.5 s
        assert not receiver._RTCRtpReceiver__lsr  # type: ignore[attr-defined]  # no sender report yet
        release()
        for _ in range(60):
            if receiver._RTCRtpReceiver__lsr:  # type: ignore[attr-defined]
                break
            await asyncio.sleep(0.05)
        assert receiver._RTCRtpReceiver__lsr  # type: ignore[attr-defined]
    finally:
        await asyncio.wait_for(a.close(), 5)
        await b.close()
    # a sender whose reports were never released still stops
    a, b, sender = await connected_pair()
    hooks.defer_sender_reports(sender.sender)
    await negotiate(a, b)
    await asyncio.wait_for(a.close(), 5)
    await b.close()


async def test_link_quality_hooks_read_remb_and_the_ice_pair() -> None:
    from aiortc.rtp import RTCP_PSFB_APP, RtcpPsfbPacket, RtcpReceiverInfo, RtcpRrPacket, pack_remb_fci

    pc = RTCPeerConnection(RTCConfiguration(bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
    try:
        video = pc.addTransceiver("video", direction="recvonly")
        audio = pc.addTransceiver("audio", direction="recvonly")
        consumer = pc.addTransceiver(ForwardedTrack("video"), direction="sendonly")
        assert hooks.uplink_estimate_bps(audio.receiver) is None  # audio has no estimator
        assert hooks.uplink_estimate_bps(video.receiver) is None  # nothing estimated yet
        estimator = video.receiver._RTCRtpReceiver__remote_bitrate_estimator  # type: ignore[attr-defined]
        estimator.rate_control.current_bitrate_initialized = True
        estimator.rate_control.current_bitrate = 640_000
        assert hooks.uplink_estimate_bps(video.receiver) == 640_000

        watch = hooks.watch_feedback(consumer.sender)
        assert hooks.watch_feedback(consumer.sender) is watch  # installed once
        assert watch.remb is None
        ssrc = consumer.sender._ssrc
        other = RtcpPsfbPacket(fmt=RTCP_PSFB_APP, ssrc=1, media_ssrc=0, fci=pack_remb_fci(100_000, [ssrc + 1]))
        await consumer.sender._handle_rtcp_packet(other)
        assert watch.remb is None  # about another stream
        remb = RtcpPsfbPacket(fmt=RTCP_PSFB_APP, ssrc=1, media_ssrc=0, fci=pack_remb_fci(300_000, [ssrc, 7]))
        await consumer.sender._handle_rtcp_packet(remb)
        assert watch.remb == 300_000 and watch.remb_at > 0 and watch.remb_ssrcs == (ssrc, 7)
        report = RtcpReceiverInfo(ssrc=ssrc, fraction_lost=51, packets_lost=3, highest_sequence=(2 << 16) + 100,
                                  jitter=0, lsr=0, dlsr=0)
        await consumer.sender._handle_rtcp_packet(RtcpRrPacket(ssrc=1, reports=[report]))
        assert watch.fraction_lost == 51 and watch.report_at > 0
        assert (watch.lost_total, watch.highest) == (3, 100)  # a browser's cycles are dropped: aiortc sends none

        # a browser's one REMB for all its streams counts once; aiortc's per-stream REMBs add up
        more = hooks.FeedbackWatch()
        more.remb, more.remb_ssrcs, more.remb_at = 300_000, (ssrc, 7), watch.remb_at
        assert hooks.remb_total([watch, more], since=0) == 300_000
        more.remb_ssrcs = (7,)
        assert hooks.remb_total([watch, more], since=0) == 600_000
        assert hooks.remb_total([watch, more], since=watch.remb_at + 1) is None  # stale

        assert hooks.nominated_pair(consumer.sender.transport) is None  # not connected
        assert hooks.nominated_remote_address(consumer.sender.transport) is None
    finally:
        await pc.close()


async def test_received_streams_leave_out_the_retransmission_stream() -> None:
    from aiortc.rtp import RtpPacket, wrap_rtx
    from support import PatternVideoTrack

    a = RTCPeerConnection(RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
    b = RTCPeerConnection(RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
    try:
        sender = a.addTransceiver(PatternVideoTrack(160, 120), direction="sendonly").sender
        await negotiate(a, b)
        receiver = b.getReceivers()[0]
        for _ in range(100):
            if hooks.received_streams(receiver) and hooks.received_streams(receiver)[0].received > 10:
                break
            await asyncio.sleep(0.05)
        [media] = hooks.received_streams(receiver)
        assert media.ssrc == sender._ssrc and media.received > 10 and media.lost == 0 and media.jitter_ms >= 0

        # one retransmission arrives: getStats() now reports the RTX stream instead of the media stream
        rtx_pt = next(c.payloadType for c in hooks.negotiated_codecs(b.getTransceivers()[0]) if c.name == "rtx")
        original = RtpPacket(payload_type=96, sequence_number=1, timestamp=1, ssrc=sender._ssrc, payload=b"\x10\x00")
        await receiver._handle_rtp_packet(wrap_rtx(original, rtx_pt, 7, sender._rtx_ssrc), 0)
        inbound = [s for s in (await receiver.getStats()).values() if s.type == "inbound-rtp"]
        assert [s.ssrc for s in inbound] == [sender._rtx_ssrc]
        assert [s.ssrc for s in hooks.received_streams(receiver)] == [sender._ssrc]
    finally:
        await a.close()
        await b.close()


async def test_receiver_rtcp_passes_through_a_rewrite() -> None:
    from aiortc.rtp import RtcpReceiverInfo, RtcpRrPacket

    pc = RTCPeerConnection(RTCConfiguration(bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
    try:
        audio = pc.addTransceiver("audio", direction="recvonly")
        sent: list[object] = []

        async def capture(packet: object) -> None:
            sent.append(packet)

        audio.receiver._send_rtcp = capture  # type: ignore[method-assign]  # stands for the transport

        def louder(packet: RtcpRrPacket) -> RtcpRrPacket:
            for report in packet.reports:
                report.fraction_lost = 128
            return packet

        hooks.rewrite_receiver_rtcp(audio.receiver, louder)  # type: ignore[arg-type]
        report = RtcpReceiverInfo(ssrc=5, fraction_lost=0, packets_lost=0, highest_sequence=1, jitter=0, lsr=0, dlsr=0)
        await audio.receiver._send_rtcp(RtcpRrPacket(ssrc=1, reports=[report]))
        assert [p.reports[0].fraction_lost for p in sent] == [128]  # type: ignore[attr-defined]
    finally:
        await pc.close()


def test_opus_is_negotiated_with_fec_and_dtx() -> None:
    from aiortc import RTCRtpSender
    from aiortc.codecs import CODECS

    original = [dict(c.parameters) for c in CODECS["audio"]]
    try:
        hooks.negotiate_opus_fec_dtx()
        opus = [c for c in RTCRtpSender.getCapabilities("audio").codecs if c.mimeType.lower() == "audio/opus"]
        assert opus and opus[0].parameters == {"minptime": 10, "useinbandfec": 1, "usedtx": 1}
    finally:
        for codec, parameters in zip(CODECS["audio"], original, strict=True):
            codec.parameters = parameters


async def test_opus_nack_is_negotiated_and_makes_the_audio_receiver_nack_a_gap() -> None:
    from aiortc import RTCPeerConnection
    from aiortc.codecs import CODECS
    from aiortc.rtp import RTCP_RTPFB_NACK, RtcpRtpfbPacket

    original = [list(c.rtcpFeedback) for c in CODECS["audio"]]
    offerer, answerer = RTCPeerConnection(), RTCPeerConnection()
    try:
        hooks.negotiate_opus_nack()
        hooks.negotiate_opus_nack()  # idempotent
        opus = next(c for c in CODECS["audio"] if c.mimeType.lower() == "audio/opus")
        assert [f.type for f in opus.rtcpFeedback].count("nack") == 1
        offerer.addTransceiver("audio", direction="sendonly")
        await offerer.setLocalDescription(await offerer.createOffer())
        assert " nack" in offerer.localDescription.sdp
        await answerer.setRemoteDescription(offerer.localDescription)
        await answerer.setLocalDescription(await answerer.createAnswer())
        await offerer.setRemoteDescription(answerer.localDescription)
        assert " nack" in answerer.localDescription.sdp
        transceiver = answerer.getTransceivers()[0]  # receives
        assert hooks.nack_audio(transceiver) and hooks.nack_audio(transceiver)
        sent: list[object] = []

        async def capture(packet: object) -> None:
            sent.append(packet)

        receiver = transceiver.receiver
        receiver._send_rtcp = capture  # type: ignore[method-assign]
        # what receive() sets once the transport runs: the codecs by payload type and the receiver's RTCP SSRC
        codecs = {c.payloadType: c for c in hooks.negotiated_codecs(transceiver)}
        receiver._RTCRtpReceiver__codecs = codecs  # type: ignore[attr-defined]
        receiver._RTCRtpReceiver__rtcp_ssrc = 1  # type: ignore[attr-defined]
        payload_type = next(iter(codecs))
        for seq in (10, 11, 13):  # 12 never comes
            packet = RtpPacket(payload_type=payload_type, sequence_number=seq, timestamp=seq * 960, ssrc=7,
                               payload=b"\x00")
            await receiver._handle_rtp_packet(packet, arrival_time_ms=seq * 20)
        nacks = [p for p in sent if isinstance(p, RtcpRtpfbPacket) and p.fmt == RTCP_RTPFB_NACK]
        assert [p.lost for p in nacks] == [[12]]
        [before] = hooks.received_streams(receiver)
        assert (before.received, before.lost) == (3, 1)
        retransmitted = RtpPacket(payload_type=payload_type, sequence_number=12, timestamp=12 * 960, ssrc=7,
                                  payload=b"\x00")
        await receiver._handle_rtp_packet(retransmitted, arrival_time_ms=300)
        [after] = hooks.received_streams(receiver)  # the link still lost it; the retransmission repaired it
        assert (after.received, after.lost) == (3, 1)
        for seq in (12, 11):  # a retried NACK's second answer; a copy of one that had arrived
            again = RtpPacket(payload_type=payload_type, sequence_number=seq, timestamp=seq * 960, ssrc=7,
                              payload=b"\x00")
            await receiver._handle_rtp_packet(again, arrival_time_ms=320)
        [copies] = hooks.received_streams(receiver)  # aiortc counts 5 received, -1 lost: neither is the link's
        assert (copies.received, copies.lost) == (3, 1)
    finally:
        for codec, feedback in zip(CODECS["audio"], original, strict=True):
            codec.rtcpFeedback = feedback
        await offerer.close()
        await answerer.close()


async def test_an_audio_receiver_without_negotiated_nack_does_not_nack() -> None:
    pc = RTCPeerConnection()
    try:
        transceiver = pc.addTransceiver("audio", direction="recvonly")  # nothing negotiated: no nack feedback
        assert not hooks.nack_audio(transceiver)
        assert transceiver.receiver._RTCRtpReceiver__nack_generator is None  # type: ignore[attr-defined]
    finally:
        await pc.close()


def test_simulcast_extensions_are_offered_on_video() -> None:
    from aiortc.codecs import HEADER_EXTENSIONS

    before = list(HEADER_EXTENSIONS["video"])
    try:
        hooks.negotiate_simulcast_extensions()
        hooks.negotiate_simulcast_extensions()  # idempotent
        uris = [e.uri for e in HEADER_EXTENSIONS["video"]]
        assert uris.count(hooks.RID_URI) == 1 and uris.count(hooks.REPAIRED_RID_URI) == 1
        ids = [e.id for e in HEADER_EXTENSIONS["video"]] + [e.id for e in HEADER_EXTENSIONS["audio"]]
        assert len([i for i in ids if i in (10, 11)]) == 2  # no clash with aiortc's own ids (bundle shares them)
    finally:
        HEADER_EXTENSIONS["video"][:] = before


async def test_simulcast_receiver_nacks_per_ssrc_and_maps_rtx_by_rid() -> None:
    from aiortc.rtcrtpparameters import RTCRtpCodecParameters
    from aiortc.rtp import RtpPacket

    pc = RTCPeerConnection(RTCConfiguration(bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
    try:
        receiver = pc.addTransceiver("video", direction="recvonly").receiver
        codecs = receiver._RTCRtpReceiver__codecs  # type: ignore[attr-defined]
        codecs[96] = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96)
        codecs[97] = RTCRtpCodecParameters(mimeType="video/rtx", clockRate=90000, payloadType=97,
                                           parameters={"apt": 96})
        nacks: list[tuple[int, list[int]]] = []

        async def capture_nack(media_ssrc: int, lost: list[int]) -> None:
            nacks.append((media_ssrc, lost))

        receiver._send_rtcp_nack = capture_nack  # type: ignore[method-assign]
        hooks.prepare_simulcast_receiver(receiver)

        def packet(ssrc: int, seq: int, rid: str | None = None, rrid: str | None = None, pt: int = 96) -> RtpPacket:
            p = RtpPacket(payload_type=pt, sequence_number=seq, ssrc=ssrc, payload=b"\x10\x00\x00")
            p.extensions.rtp_stream_id, p.extensions.repaired_rtp_stream_id = rid, rrid
            return p

        # two layers interleaved, each numbered on its own: no NACK at all
        for i in range(5):
            await receiver._handle_rtp_packet(packet(1, 100 + i, "q"), 0)
            await receiver._handle_rtp_packet(packet(2, 40000 + i, "h"), 0)
        assert nacks == []
        await receiver._handle_rtp_packet(packet(2, 40007), 0)  # 40005 and 40006 of layer h are missing
        assert nacks == [(2, [40005, 40006])]
        # an RTX packet naming the repaired layer by rid is unwrapped to that layer's SSRC
        await receiver._handle_rtp_packet(packet(9, 7, rrid="h", pt=97), 0)
        assert receiver._RTCRtpReceiver__rtx_ssrc == {9: 2}  # type: ignore[attr-defined]
    finally:
        await pc.close()


async def test_raw_rtp_streams_send_and_hear_their_rtcp() -> None:
    """A stream sent with send_rtp arrives at the other peer; RTCP about its SSRC comes back to listen_rtcp."""
    from aiortc.rtp import RTCP_PSFB_PLI, RtcpPsfbPacket, RtpPacket

    a = RTCPeerConnection(RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
    b = RTCPeerConnection(RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
    hooks.restrict_host_addresses(["127.0.0.1"])
    try:
        sending = a.addTransceiver(ForwardedTrack("video"), direction="sendonly")
        await negotiate(a, b)
        receiving = b.getTransceivers()[0].receiver
        seen: list[int] = []
        hooks.observe_receiver(receiving, lambda p: seen.append(p.sequence_number))
        heard: list[object] = []

        async def on_rtcp(packet: object) -> None:
            heard.append(packet)

        transport = sending.sender.transport
        hooks.listen_rtcp(transport, 4242, on_rtcp)
        payload_type = hooks.negotiated_codecs(sending)[0].payloadType
        for seq in range(5):
            await hooks.send_rtp(transport, RtpPacket(payload_type=payload_type, sequence_number=seq, ssrc=4242,
                                                      payload=b"\x10\x00\x00"))
        for _ in range(40):
            if len(seen) == 5:
                break
            await asyncio.sleep(0.05)
        assert seen == [0, 1, 2, 3, 4]
        await receiving._send_rtcp(RtcpPsfbPacket(fmt=RTCP_PSFB_PLI, ssrc=1, media_ssrc=4242))
        for _ in range(40):
            if heard:
                break
            await asyncio.sleep(0.05)
        assert isinstance(heard[0], RtcpPsfbPacket) and heard[0].media_ssrc == 4242
    finally:
        await a.close()
        await b.close()


async def test_feedback_watch_measures_the_round_trip_of_any_recent_sender_report() -> None:
    import time

    from aiortc.rtp import RtcpReceiverInfo, RtcpRrPacket, RtcpSenderInfo, RtcpSrPacket

    pc = RTCPeerConnection(RTCConfiguration(bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
    try:
        sender = pc.addTransceiver(ForwardedTrack("audio"), direction="sendonly").sender
        sent: list[object] = []

        async def capture(packets: list[object]) -> None:
            sent.extend(packets)

        sender._send_rtcp = capture  # type: ignore[method-assign]  # stands for the transport
        watch = hooks.watch_feedback(sender)
        ssrc = sender._ssrc
        for ntp in (1 << 40, 2 << 40, 3 << 40):  # three reports, a round trip of ~0.3 s echoes the first
            info = RtcpSenderInfo(ntp_timestamp=ntp, rtp_timestamp=0, packet_count=0, octet_count=0)
            await sender._send_rtcp([RtcpSrPacket(ssrc=ssrc, sender_info=info)])
        assert len(sent) == 3
        await asyncio.sleep(0.3)
        lsr = ((1 << 40) >> 16) & 0xFFFFFFFF
        report = RtcpReceiverInfo(ssrc=ssrc, fraction_lost=0, packets_lost=0, highest_sequence=1, jitter=0,
                                  lsr=lsr, dlsr=int(0.1 * 65536))
        before = time.monotonic()
        await sender._handle_rtcp_packet(RtcpRrPacket(ssrc=1, reports=[report]))
        assert watch.rtt is not None and 0.15 < watch.rtt < 0.5 and watch.rtt_at >= before
    finally:
        await pc.close()


def test_cap_remb_lowers_only_remb_above_the_cap() -> None:
    from aiortc.rtp import RTCP_PSFB_APP, RTCP_PSFB_PLI, RtcpPsfbPacket, pack_remb_fci, unpack_remb_fci

    remb = RtcpPsfbPacket(fmt=RTCP_PSFB_APP, ssrc=1, media_ssrc=0, fci=pack_remb_fci(900_000, [7, 8]))
    capped = hooks.cap_remb(remb, 260_000)
    bitrate, ssrcs = unpack_remb_fci(capped.fci)
    assert abs(bitrate - 260_000) < 260_000 * 0.001 and ssrcs == [7, 8] and capped.ssrc == 1
    low = RtcpPsfbPacket(fmt=RTCP_PSFB_APP, ssrc=1, media_ssrc=0, fci=pack_remb_fci(200_000, [7]))
    assert hooks.cap_remb(low, 260_000) is low
    pli = RtcpPsfbPacket(fmt=RTCP_PSFB_PLI, ssrc=1, media_ssrc=7)
    assert hooks.cap_remb(pli, 260_000) is pli


async def test_a_receiver_sends_a_remb_through_its_rtcp_path() -> None:
    from aiortc.rtp import unpack_remb_fci

    pc = RTCPeerConnection(RTCConfiguration(bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
    try:
        receiver = pc.addTransceiver("video", direction="recvonly").receiver
        sent: list[object] = []

        async def record(packet: object) -> None:  # stands in for the DTLS transport
            sent.append(packet)

        receiver._send_rtcp = record  # type: ignore[method-assign]
        await hooks.send_remb(receiver, 300_000, [5])
        rtcp_ssrc = receiver._RTCRtpReceiver__rtcp_ssrc  # type: ignore[attr-defined]
        assert unpack_remb_fci(sent[-1].fci) == (300_000, [5]) and sent[-1].ssrc == rtcp_ssrc  # type: ignore[attr-defined]
    finally:
        await pc.close()


async def test_a_keyframe_gets_a_video_receiver_past_a_packet_that_never_came() -> None:
    from aiortc.rtcrtpparameters import RTCRtpCodecParameters
    from aiortc.rtp import RtpPacket

    pc = RTCPeerConnection(RTCConfiguration(bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
    try:
        receiver = pc.addTransceiver("video", direction="recvonly").receiver
        codecs = receiver._RTCRtpReceiver__codecs  # type: ignore[attr-defined]
        codecs[96] = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96)
        plis: list[int] = []

        async def capture_pli(media_ssrc: int) -> None:
            plis.append(media_ssrc)

        async def no_nack(media_ssrc: int, lost: list[int]) -> None:
            pass

        receiver._send_rtcp_pli = capture_pli  # type: ignore[method-assign]
        receiver._send_rtcp_nack = no_nack  # type: ignore[method-assign]
        codecs[97] = RTCRtpCodecParameters(mimeType="video/rtx", clockRate=90000, payloadType=97,
                                           parameters={"apt": 96})
        receiver._RTCRtpReceiver__rtx_ssrc[9] = 5  # type: ignore[attr-defined]
        keyframes = {300, 310}
        hooks.decode_from_keyframes(receiver, lambda p: p.payload_type == 96 and p.sequence_number in keyframes,
                                    lambda p: p.payload_type == 96, stuck_after=0.2)
        jitter = receiver._RTCRtpReceiver__jitter_buffer  # type: ignore[attr-defined]

        async def send(seq: int) -> None:  # one packet per frame
            await receiver._handle_rtp_packet(RtpPacket(payload_type=96, sequence_number=seq, timestamp=seq * 3000,
                                                        ssrc=5, payload=b"\x10\x00\x00"), 0)

        for seq in range(100, 110):
            await send(seq)
        assert jitter._origin == 109  # frames came out in order
        for seq in range(111, 120):  # 110 never arrives: aiortc holds every later frame back...
            await send(seq)
        assert jitter._origin == 109 and plis == []
        await asyncio.sleep(0.25)
        await send(120)
        assert plis == [5]  # ...so after a while the receiver asks for a keyframe, as a browser does
        await send(300)  # and that keyframe starts afresh: what was in front of it is dropped
        await send(301)
        assert jitter._origin == 301
        for seq in (303, 304):  # 302 never arrives either
            await send(seq)
        # the next keyframe's first packet is lost and comes back as a retransmission (RTX): it too starts afresh
        await receiver._handle_rtp_packet(RtpPacket(payload_type=97, sequence_number=1, timestamp=310 * 3000, ssrc=9,
                                                    payload=struct.pack("!H", 310) + b"\x10\x00\x00"), 0)
        await send(311)
        assert jitter._origin == 311
    finally:
        await pc.close()


async def test_a_self_paced_association_keeps_no_congestion_window() -> None:
    pc = RTCPeerConnection()
    try:
        pc.createDataChannel("probe", negotiated=True, id=1, ordered=False, maxRetransmits=0)
        hooks.pace_sctp_ourselves(pc.sctp)
        sctp = pc.sctp
        sctp._cwnd = 1200  # what aiortc does on a timeout
        assert sctp._cwnd == hooks.SELF_PACED_WINDOW
        assert sctp._abandon_overdue() is False  # nothing sent, nothing to give up
    finally:
        await pc.close()
    with pytest.raises(hooks.IncompatibleAiortc):
        hooks.pace_sctp_ourselves(None)


async def test_consent_survives_a_long_round_trip_and_still_expires_on_a_dead_link(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"])
    # aioice's own checks, whatever an earlier test of this process patched (restored after)
    monkeypatch.setattr(aioice.ice.Connection, "query_consent", hooks.AIOICE_QUERY_CONSENT)
    monkeypatch.setattr(aioice.ice, "CONSENT_INTERVAL", 0.2)
    monkeypatch.setattr(aioice.ice, "CONSENT_FAILURES", 3)  # consent expires 0.6 s after the last answer

    async def closes(answer_delay: float | None, seconds: float) -> bool:
        a, b = await _ice_pair()
        try:
            _answer_late(b, answer_delay)
            return await _closed_within(a, seconds)
        finally:
            await asyncio.gather(a.close(), b.close())

    assert await closes(0.8, 3.0)  # aioice alone: every check to a peer 0.8 s away times out, the link closes
    hooks.patient_consent()
    assert not await closes(0.8, 3.0)  # answered within the retransmissions' 3.5 s: consent holds
    assert await closes(None, 6.0)  # never answered: consent still expires


async def _ice_pair() -> tuple[aioice.Connection, aioice.Connection]:
    a, b = aioice.Connection(ice_controlling=True), aioice.Connection(ice_controlling=False)
    await asyncio.gather(a.gather_candidates(), b.gather_candidates())
    for one, other in ((a, b), (b, a)):
        for candidate in other.local_candidates:
            await one.add_remote_candidate(candidate)
        await one.add_remote_candidate(None)
        one.remote_username, one.remote_password = other.local_username, other.local_password
    await asyncio.gather(a.connect(), b.connect())
    return a, b


def _answer_late(connection: aioice.Connection, delay: float | None) -> None:
    """Everything ``connection`` sends over STUN leaves ``delay`` seconds late (None: never), as on a long link."""
    loop = asyncio.get_running_loop()
    for protocol in connection._protocols:
        send = protocol.send_stun
        protocol.send_stun = (lambda message, addr: None) if delay is None else (  # type: ignore[method-assign]
            lambda message, addr, send=send: loop.call_later(delay, send, message, addr))


async def _closed_within(connection: aioice.Connection, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not connection._closed:
        await asyncio.sleep(0.05)
    return bool(connection._closed)


async def test_a_self_paced_association_takes_data_as_the_cookie_ack_it_lost() -> None:
    """Side a's first COOKIE ECHO and first COOKIE ACK are lost, so b waits for a COOKIE ACK while a, established by
    b's COOKIE ECHO, already sends DATA: that DATA establishes b at once (aiortc alone waits its 3 s T1, and a PONG
    sent from the PING's handler meanwhile raised and closed the connection)."""
    config = RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
    a, b = RTCPeerConnection(config), RTCPeerConnection(config)
    channels = [pc.createDataChannel("probe", negotiated=True, id=1) for pc in (a, b)]
    pongs: list[bytes] = []
    dropped: list[str] = []
    channels[1].on("message", lambda message: channels[1].send(b"pong:" + message))
    channels[0].on("message", pongs.append)
    try:
        await a.setLocalDescription(await a.createOffer())
        await b.setRemoteDescription(a.localDescription)
        await b.setLocalDescription(await b.createAnswer())
        await a.setRemoteDescription(b.localDescription)
        for pc in (a, b):
            hooks.pace_sctp_ourselves(pc.sctp)
        send = a.sctp._send_chunk

        async def lose_the_first_cookies(chunk: object) -> None:
            kind = type(chunk).__name__
            if kind in ("CookieEchoChunk", "CookieAckChunk") and kind not in dropped:
                dropped.append(kind)
                return
            await send(chunk)
        a.sctp._send_chunk = lose_the_first_cookies  # type: ignore[method-assign]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while channels[0].readyState != "open" and loop.time() < deadline:
            await asyncio.sleep(0.01)
        assert channels[0].readyState == "open"
        opened = loop.time()
        while not pongs and loop.time() < opened + 2.0:
            if channels[0].readyState == "open":
                channels[0].send(b"ping")
            await asyncio.sleep(0.05)
        assert "CookieAckChunk" in dropped, "no COOKIE ACK was lost: the test proves nothing"
        assert pongs and pongs[0] == b"pong:ping"
        assert loop.time() - opened < 2.0  # well inside aiortc's 3 s T1
        assert "closed" not in (a.connectionState, b.connectionState)
    finally:
        await a.close()
        await b.close()


async def test_a_self_paced_association_sends_one_sack_per_interval_not_one_per_packet() -> None:
    """A burst of probes draws one SACK per ``SACK_INTERVAL`` from the receiving side, not one per packet as from
    aiortc's own association (a download's SACKs filled a slow uplink), and the last one still acknowledges all."""

    async def sacks_for_a_burst(paced: bool) -> tuple[int, int]:
        config = RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
        a, b = RTCPeerConnection(config), RTCPeerConnection(config)
        channels = [pc.createDataChannel("probe", negotiated=True, id=1, ordered=False, maxRetransmits=0)
                    for pc in (a, b)]
        received: list[bytes] = []
        channels[0].on("message", received.append)
        try:
            await a.setLocalDescription(await a.createOffer())
            await b.setRemoteDescription(a.localDescription)
            await b.setLocalDescription(await b.createAnswer())
            await a.setRemoteDescription(b.localDescription)
            if paced:
                for pc in (a, b):
                    hooks.pace_sctp_ourselves(pc.sctp)
            await wait_for(lambda: all(c.readyState == "open" for c in channels), timeout=10)
            sent = a.sctp._send_chunk
            sacks: list[object] = []

            async def count_sacks(chunk: object) -> None:
                if type(chunk).__name__ == "SackChunk":
                    sacks.append(chunk)
                await sent(chunk)
            a.sctp._send_chunk = count_sacks  # type: ignore[method-assign]
            for i in range(100):  # 100 probes over about 0.2 s
                channels[1].send(bytes(200))
                if i % 10 == 9:
                    await asyncio.sleep(0.02)
            await wait_for(lambda: len(received) == 100, timeout=5)
            await asyncio.sleep(hooks.SACK_INTERVAL * 2)
            assert sacks[-1].cumulative_tsn == a.sctp._last_received_tsn  # type: ignore[attr-defined]
            await wait_for(lambda: not b.sctp._sent_queue, timeout=2)  # all acknowledged
            return len(sacks), len(received)
        finally:
            await a.close()
            await b.close()

    aiortc_sacks, _ = await sacks_for_a_burst(paced=False)
    paced_sacks, _ = await sacks_for_a_burst(paced=True)
    assert aiortc_sacks >= 50, aiortc_sacks  # aiortc: about one per packet
    assert paced_sacks <= round(0.3 / hooks.SACK_INTERVAL) + 1, paced_sacks  # one per interval (+1: the fencepost)
