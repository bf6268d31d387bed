"""What a test subscriber measures: bitrates over a window and freezes as WebRTC counts them."""

from __future__ import annotations

import time

import pytest

from client.receive_stats import ReceivedBytes, freezes


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
