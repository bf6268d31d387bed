"""The retrying NACK generator on a real aiortc receiver: what it asks for, when, and when it asks again."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiortc import RTCPeerConnection, RTCRtpReceiver
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import RtpPacket

from media import nack


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def receiver() -> AsyncIterator[RTCRtpReceiver]:
    pc = RTCPeerConnection()
    try:
        receiver = pc.addTransceiver("video", direction="recvonly").receiver
        # what receive() sets once negotiated: the codecs by payload type
        receiver._RTCRtpReceiver__codecs[96] = RTCRtpCodecParameters(  # type: ignore[attr-defined]
            mimeType="video/VP8", clockRate=90000, payloadType=96)
        yield receiver
    finally:
        await pc.close()


def captured(receiver: RTCRtpReceiver) -> list[tuple[int, list[int]]]:
    """The NACKs the receiver sends (its RTCP output), by media SSRC."""
    sent: list[tuple[int, list[int]]] = []

    async def capture(media_ssrc: int, lost: list[int]) -> None:
        sent.append((media_ssrc, lost))

    receiver._send_rtcp_nack = capture  # type: ignore[method-assign]
    return sent


def packet(seq: int, ssrc: int = 5) -> RtpPacket:
    return RtpPacket(payload_type=96, sequence_number=seq & 0xFFFF, ssrc=ssrc, payload=b"\x10\x00\x00")


Timed = tuple[list[tuple[int, list[int]]], Clock, nack.RetryingNackGenerator, list[int]]


def timed(receiver: RTCRtpReceiver) -> Timed:
    """A generator on a test clock in ``receiver``: (NACKs sent, clock, generator, SSRCs reported lost for good)."""
    sent = captured(receiver)
    clock = Clock()
    generator = nack.RetryingNackGenerator(receiver, clock)
    receiver._RTCRtpReceiver__nack_generator = generator  # type: ignore[attr-defined]
    lost: list[int] = []
    generator.on_lost = lost.append
    return sent, clock, generator, lost


async def feed(receiver: RTCRtpReceiver, *seqs: int, ssrc: int = 5) -> None:
    for seq in seqs:
        await receiver._handle_rtp_packet(packet(seq, ssrc), 0)


async def test_a_gap_is_nacked_once_and_a_later_gap_does_not_repeat_it(receiver: RTCRtpReceiver) -> None:
    sent, clock, generator, lost = timed(receiver)
    await feed(receiver, 10, 11, 14)
    assert sent == [(5, [12, 13])]
    clock.now += 0.01  # well within a round trip: aiortc's generator would NACK 12 and 13 again here
    await feed(receiver, 15, 17)
    assert sent == [(5, [12, 13]), (5, [16])]
    await feed(receiver, 13)  # a repair: not asked for any more
    assert generator.repaired == 1
    generator.stop()


async def test_a_lost_repair_is_asked_for_again_after_a_round_trip_without_new_loss(
        receiver: RTCRtpReceiver) -> None:
    sent, clock, generator, lost = timed(receiver)
    await feed(receiver, 1, 3)
    assert sent == [(5, [2])]
    clock.now += nack.RTT_INITIAL * nack.RETRY_MARGIN * 0.9
    await asyncio.sleep(3 * nack.TICK)
    assert sent == [(5, [2])]  # not yet a round trip
    clock.now += nack.RTT_INITIAL * nack.RETRY_MARGIN * 0.2
    await asyncio.sleep(3 * nack.TICK)
    assert sent == [(5, [2]), (5, [2])]  # the timer asked again, though no packet arrived
    for _ in range(nack.RETRIES * 2):
        clock.now += nack.RTT_INITIAL * nack.RETRY_MARGIN * 1.1
        await asyncio.sleep(2 * nack.TICK)
    assert len(sent) == nack.RETRIES and generator.given_up == 1 and lost == [5]
    await asyncio.sleep(3 * nack.TICK)
    assert generator._timer is None  # nothing left to ask for: the timer ended


async def test_a_packet_is_not_asked_for_past_its_window(receiver: RTCRtpReceiver) -> None:
    sent, clock, generator, lost = timed(receiver)
    await feed(receiver, 1, 3, 4, 5)
    clock.now += 0.9  # no repair yet: asked for again
    await feed(receiver, 6)
    await asyncio.sleep(3 * nack.TICK)
    assert sent == [(5, [2]), (5, [2])] and lost == []
    clock.now += nack.WINDOW  # 2 went missing WINDOW + 0.9 s ago: too late for its frame
    await asyncio.sleep(3 * nack.TICK)
    assert sent == [(5, [2]), (5, [2])] and lost == [5] and generator.given_up == 1


async def test_audio_asks_for_none_of_an_outage_gap(receiver: RTCRtpReceiver) -> None:
    """An outage's speech is past playing before any repair could come."""
    sent = captured(receiver)
    clock = Clock()
    generator = nack.RetryingNackGenerator(receiver, clock, outage_nacks=0)
    receiver._RTCRtpReceiver__nack_generator = generator  # type: ignore[attr-defined]
    await feed(receiver, 1, 2)
    clock.now += nack.STALE_GAP * 5
    await feed(receiver, 253)
    assert sent == [] and generator.given_up == 250
    clock.now += 0.05
    await feed(receiver, 255)  # a loss on the restored link is asked for as usual
    assert sent == [(5, [254])]
    generator.stop()


async def test_an_outage_gap_is_asked_for_once_and_reported(receiver: RTCRtpReceiver) -> None:
    sent, clock, generator, lost = timed(receiver)
    await feed(receiver, 1, 2)
    clock.now += nack.STALE_GAP * 5  # the link was cut: 250 packets never came
    await feed(receiver, 253)
    assert sent == [(5, list(range(253 - nack.STALE_NACKS, 253)))] and lost == [5]  # the newest, once
    clock.now += 0.05
    await feed(receiver, 255)  # a loss on the restored link is asked for as usual
    assert sent[1:] == [(5, [254])]
    clock.now += 1.0
    await asyncio.sleep(3 * nack.TICK)
    assert sent[2:] == [(5, [254])]  # and again; the outage's packets are not
    assert generator.given_up == 250
    generator.stop()


async def test_the_round_trip_is_learned_from_first_try_repairs(receiver: RTCRtpReceiver) -> None:
    sent, clock, generator, lost = timed(receiver)
    await feed(receiver, 1, 3, 5)
    clock.now += 0.8  # a satellite round trip
    await feed(receiver, 2)
    assert generator.rtt == pytest.approx(0.8)
    clock.now += 0.2  # 4 has waited 1.0 s > 0.96 s: asked for again
    await asyncio.sleep(3 * nack.TICK)
    assert sent[-1] == (5, [4])
    clock.now += 0.1
    await feed(receiver, 4)  # which NACK it answers is unknown (Karn): the estimate stays
    assert generator.rtt == pytest.approx(0.8)
    await feed(receiver, 7)
    clock.now += 0.8 * nack.RETRY_MARGIN * 0.9
    await asyncio.sleep(3 * nack.TICK)
    assert sent[-1] == (5, [6])  # the first NACK only: a round trip has not passed
    clock.now += 0.8 * nack.RETRY_MARGIN * 0.2
    await asyncio.sleep(3 * nack.TICK)
    assert sent[-1] == (5, [6]) and len([s for s in sent if s == (5, [6])]) == 2
    generator.stop()


async def test_streams_are_numbered_apart(receiver: RTCRtpReceiver) -> None:
    sent = captured(receiver)
    generator = nack.install(receiver)
    assert nack.install(receiver) is generator and nack.of(receiver) is generator
    for i in range(5):  # two simulcast layers interleaved, each with its own numbering: nothing is missing
        await feed(receiver, 100 + i, ssrc=1)
        await feed(receiver, 40000 + i, ssrc=2)
    assert sent == []
    await feed(receiver, 65534, 1, ssrc=3)  # across the wrap
    assert sent == [(3, [0, 65535])]  # aiortc sorts them numerically; each is its own NACK entry
    await receiver.stop()  # stopping the receiver ends the retries
    await asyncio.sleep(3 * nack.TICK)
    assert generator._timer is None


async def test_a_huge_jump_tracks_only_the_newest_packets(receiver: RTCRtpReceiver) -> None:
    sent, _, generator, _ = timed(receiver)
    await feed(receiver, 0, 30000)  # a sender restarted its numbering, or a hostile packet
    [(ssrc, lost)] = sent
    assert len(lost) == nack.TRACKED - 1 and lost[-1] == 29999
    generator.stop()
