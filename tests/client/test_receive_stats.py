"""What a test subscriber measures: bitrates and speech loss over a window, and freezes as WebRTC counts them."""

from __future__ import annotations

import time

import pytest

from client.receive_stats import AudioLoss, LossFigures, ReceivedBytes, freezes


def test_bitrate_counts_only_the_window() -> None:
    received = ReceivedBytes()
    start = time.monotonic()
    received.add(b"x" * 1000)
    received.add(b"x" * 250)
    assert received.kbps(start, start + 10) == pytest.approx(1.0)  # 1250 bytes in 10 s
    assert received.kbps(start + 5, start + 10) == 0.0
    assert received.kbps(start, start) == 0.0


def test_freezes_are_gaps_well_beyond_the_recent_frame_interval() -> None:
    steady = [i / 30 for i in range(60)]  # 30 fps for 2 s
    assert freezes(steady) == []
    gap = [*steady, 2.0 + 0.2, *[2.2 + i / 30 for i in range(1, 30)]]  # 230 ms: > 3 × 33 ms and > 33 + 150 ms
    found = freezes(gap)
    assert len(found) == 1 and found[0].at == pytest.approx(59 / 30) and found[0].seconds == pytest.approx(0.2333, 1e-3)
    slow = [i * 0.2 for i in range(20)]  # 5 fps: a 400 ms gap is under 3 × 200 ms, not a freeze
    assert freezes([*slow, slow[-1] + 0.4]) == []
    assert len(freezes([*slow, slow[-1] + 0.7])) == 1
    assert freezes(gap, since=2.1) == []  # only frames within the window count


FEC = bytes([0x08, 0x40])  # SILK, one frame, LBRR flag set: carries FEC for the packet before it
PLAIN = bytes([0x08, 0x00])


def test_speech_loss_counts_the_packets_sent_within_the_window_and_repairs_until_its_end() -> None:
    loss = AudioLoss()
    for seq in range(100):  # before the window: 0-99 at 50 packets a second
        loss.add(seq, PLAIN, at=seq * 0.02)
    for seq in range(100, 200):
        if seq not in (120, 150, 151, 190):
            loss.add(seq, FEC if seq == 121 else PLAIN, at=seq * 0.02)
    loss.add(50, PLAIN, at=2.5)  # a late copy of a packet from before the window: it does not start the window
    loss.add(150, PLAIN, at=3.9)  # 150 repaired by a retransmission before the window ends
    figures = loss.figures(since=2.0, until=4.0)
    assert figures == LossFigures(expected=100, lost=3, recovered=1)  # 100-199 sent; 120 (FEC), 151, 190 missing
    assert figures.residual == 2 / 100
    # waiting 0.5 s for repairs: only what was sent up to 3.5 s counts, and 190 is no longer judged
    assert loss.figures(since=2.0, until=4.0, repair_wait=0.5) == LossFigures(expected=75, lost=2, recovered=1)
    assert loss.figures(since=5.0, until=6.0) == LossFigures(0, 0, 0)
