"""What a test subscriber measures about what it receives: audio loss after Opus FEC, bitrate, video freezes,
and decoder errors."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass


def carries_fec(payload: bytes) -> bool:
    """True when an Opus packet carries in-band FEC (LBRR) data for the packet before it.

    SILK and hybrid packets (TOC configurations 0-15) start their first frame with the VAD flag and then the LBRR
    flag, the two top bits of the byte after the TOC for a mono, single-frame packet (libwebrtc's
    ``WebRtcOpus_PacketHasFec`` reads the same bit). CELT-only packets have no FEC.
    """
    return len(payload) > 1 and payload[0] >> 3 < 16 and payload[0] & 0x03 == 0 and bool(payload[1] & 0x40)


@dataclass(frozen=True)
class LossFigures:
    expected: int
    lost: int
    recovered: int  # lost packets whose successor arrived with FEC for them

    @property
    def loss(self) -> float:
        return self.lost / self.expected if self.expected else 0.0

    @property
    def residual(self) -> float:
        """Loss left after FEC: what a listener hears as gaps."""
        return (self.lost - self.recovered) / self.expected if self.expected else 0.0


class AudioLoss:
    """Every audio packet's arrival (time, extended sequence number, FEC flag), for loss over any time window."""

    def __init__(self) -> None:
        self._arrivals: list[tuple[float, int, bool]] = []
        self._highest: int | None = None

    def add(self, sequence_number: int, payload: bytes, at: float | None = None) -> None:
        """One packet's arrival, at ``at`` (default: now) on the monotonic clock."""
        if self._highest is None:
            ext = sequence_number
        else:
            delta = (sequence_number - self._highest) & 0xFFFF
            ext = self._highest + delta if delta < 0x8000 else self._highest + delta - 0x10000
        self._highest = ext if self._highest is None else max(self._highest, ext)
        self._arrivals.append((time.monotonic() if at is None else at, ext, carries_fec(payload)))

    def figures(self, since: float = 0.0, until: float = float("inf"), repair_wait: float = 0.0) -> LossFigures:
        """Loss among the packets sent within a window: those newer than every packet that arrived before ``since``,
        up to the newest that arrived before ``until - repair_wait``; a packet counts as arrived if it did before
        ``until`` (``repair_wait``: time for a retransmission to repair the last ones). Counting from the oldest
        packet that arrived within the window instead took a late retransmission of an earlier packet as the
        window's start and all that arrived before the window as lost (45 in a row in one bench run)."""
        before = [ext for at, ext, _ in self._arrivals if at < since]
        sent = [ext for at, ext, _ in self._arrivals if since <= at < until - repair_wait]
        first = max(before) + 1 if before else min(sent, default=0)
        last = max(sent, default=first - 1)
        if last < first:
            return LossFigures(0, 0, 0)
        arrived = {ext: fec for at, ext, fec in self._arrivals if at < until and first <= ext <= last + 1}
        missing = [ext for ext in range(first, last + 1) if ext not in arrived]
        recovered = sum(1 for ext in missing if arrived.get(ext + 1, False))
        return LossFigures(last - first + 1, len(missing), recovered)


class ReceivedBytes:
    """Every RTP packet's arrival (time, payload octets) on one receiver, for the bitrate over any time window."""

    def __init__(self) -> None:
        self._arrivals: list[tuple[float, int]] = []

    def add(self, payload: bytes) -> None:
        self._arrivals.append((time.monotonic(), len(payload)))

    def kbps(self, since: float, until: float) -> float:
        """Payload kbit/s received within [since, until) (retransmissions included: they cross the link too)."""
        octets = sum(size for at, size in self._arrivals if since <= at < until)
        return octets * 8 / 1000 / (until - since) if until > since else 0.0

    def each_second(self, seconds: int) -> list[int]:
        """kbit/s in each of the last ``seconds`` seconds, oldest first (where a stream stopped, when it did)."""
        now = time.monotonic()
        return [round(self.kbps(now - k - 1, now - k)) for k in reversed(range(seconds))]


@dataclass(frozen=True)
class Freeze:
    at: float  # when the last frame before the gap was decoded
    seconds: float


def freezes(frame_times: list[float], since: float = 0.0, until: float = float("inf")) -> list[Freeze]:
    """The freezes among frames decoded within [since, until), as WebRTC counts them (``freezeCount`` of
    ``inbound-rtp``): a gap between two frames longer than max(3 × the mean gap, the mean gap + 150 ms), the mean
    taken over the (up to) 30 gaps before it."""
    times = [t for t in frame_times if since <= t < until]
    found = []
    gaps: list[float] = []
    for before, after in zip(times, times[1:], strict=False):
        gap = after - before
        if gaps:
            mean = sum(gaps[-30:]) / len(gaps[-30:])
            if gap > max(3 * mean, mean + 0.15):
                found.append(Freeze(before, gap))
        gaps.append(gap)
    return found


class DecodeErrors(logging.Handler):
    """Counts aiortc's "failed to decode" warnings in this process (a corrupted or undecodable frame)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if "failed to decode" in record.getMessage():
            self.count += 1

    def __enter__(self) -> DecodeErrors:
        logging.getLogger("aiortc.rtcrtpreceiver").addHandler(self)
        return self

    def __exit__(self, *exc: object) -> None:
        logging.getLogger("aiortc.rtcrtpreceiver").removeHandler(self)
