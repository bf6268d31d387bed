"""The aiortc/aioice internals the relay relies on. If an upgrade moves any of them, these fail first."""

from __future__ import annotations

import asyncio

import aioice.ice
import aiortc
import pytest
from aiortc import RTCBundlePolicy, RTCConfiguration, RTCPeerConnection, RTCRtpTransceiver

from media import hooks
from media.transport import ForwardedTrack


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
    from aiortc.rtp import RTCP_PSFB_APP, RtcpPsfbPacket, pack_remb_fci

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

        watch = hooks.watch_remb(consumer.sender)
        assert hooks.watch_remb(consumer.sender) is watch  # installed once
        assert watch.bitrate is None
        ssrc = consumer.sender._ssrc
        other = RtcpPsfbPacket(fmt=RTCP_PSFB_APP, ssrc=1, media_ssrc=0, fci=pack_remb_fci(100_000, [ssrc + 1]))
        await consumer.sender._handle_rtcp_packet(other)
        assert watch.bitrate is None  # about another stream
        remb = RtcpPsfbPacket(fmt=RTCP_PSFB_APP, ssrc=1, media_ssrc=0, fci=pack_remb_fci(300_000, [ssrc]))
        await consumer.sender._handle_rtcp_packet(remb)
        assert watch.bitrate == 300_000 and watch.at > 0

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
