"""NACKs retried once per round trip, as libwebrtc's NackRequester does, instead of aiortc's NACK-on-new-loss.

aiortc's ``NackGenerator`` NACKs only when a new packet goes missing, and then every packet still missing: a lost
repair is asked for again only at the next new loss (seconds later on a slow layer, never on a clean link), and
each new loss re-requests the whole missing set, which the sender answers again (1–9 resends of one packet were
traced on a 10 % loss link). Here each missing packet is NACKed once when its gap is seen, then again each time a
round trip has passed without its repair, up to ``RETRIES`` times; the round trip is learned from how long repairs
take. One generator serves every SSRC of a receiver: simulcast layers have sequence numbers of their own.

A gap that opened while nothing arrived for ``STALE_GAP`` (an outage) is asked for once, its newest
``STALE_NACKS`` packets only (what an aiortc sender keeps; libwebrtc keeps about a second): asking again and again
for seconds of packets filled a 200 kbit/s uplink with stale resends just as it came back, while a short cut is
still repaired whole. Audio asks for none of it: its jitter buffer holds a fraction of a second, so the outage's
speech is past playing before a repair could come (libwebrtc's audio NACK asks only for packets that can still be
played); on EDGE its 128 stale packets were resent with the video's into the link just back. Such a gap, or a
packet still missing after ``RETRIES`` NACKs or ``WINDOW`` seconds, is reported to ``on_lost``: a relay then asks
its publisher for a keyframe at once, since none of its subscribers can decode past the hole.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from aiortc import RTCRtpReceiver
from aiortc.rtp import RtpPacket

from .errors import IncompatibleAiortc

RETRIES = 10  # NACKs per missing packet at most (libwebrtc: kMaxNackRetries)
TRACKED = 1000  # packets behind the newest that may still be asked for (libwebrtc: kMaxPacketAge 10000 is for 1
# Mbit/s+ video; 1000 is 10 s of a 600 kbit/s stream)
TICK = 0.02  # s between checks for overdue NACKs (libwebrtc's NACK module runs every 20 ms)
RTT_INITIAL = 0.1  # s, until a repair is timed (libwebrtc's default)
RTT_MIN = 0.02
RTT_MAX = 2.0
RETRY_MARGIN = 1.2  # a repair may come this many round trips after its NACK before it is asked for again
WINDOW = 3.0  # s after it went missing a packet is no longer asked for (its frame is long overdue)
STALE_GAP = 1.0  # s without any packet of the stream: the gap it leaves is an outage's
STALE_NACKS = 128  # newest packets of an outage's gap asked for, once

NAME = "_RTCRtpReceiver__nack_generator"


class _Missing:
    __slots__ = ("missed_at", "nacked_at", "tries")

    def __init__(self, now: float, tries: int) -> None:
        self.missed_at = now
        self.nacked_at = now
        self.tries = tries


class _Stream:
    """One SSRC's newest sequence number and the packets it still misses."""

    __slots__ = ("arrived_at", "max_seq", "missing")

    def __init__(self, max_seq: int, now: float) -> None:
        self.max_seq = max_seq
        self.arrived_at = now
        self.missing: dict[int, _Missing] = {}


class RetryingNackGenerator:
    """Stands in for aiortc's receiver-wide ``NackGenerator``: ``add`` returns True when ``missing`` holds sequence
    numbers to NACK now for the packet's SSRC (the receiver sends them at once); a timer sends the retries that fall
    due between packets. ``repaired`` counts missing packets that arrived later, ``duplicates`` packets that came
    again (a retried NACK's second answer) or after they were given up: aiortc's statistics count both as received,
    so loss before repair needs them; ``on_lost(ssrc)`` is called when packets of that SSRC will not be asked for
    any more while still missing."""

    def __init__(self, receiver: RTCRtpReceiver, clock: Callable[[], float] = time.monotonic,
                 outage_nacks: int = STALE_NACKS) -> None:
        """``outage_nacks``: how many of an outage's newest packets are asked for (0 for audio)."""
        self.on_lost: Callable[[int], None] | None = None
        self._outage_nacks = outage_nacks
        self._receiver = receiver
        self._clock = clock
        self._streams: dict[int, _Stream] = {}
        self._timer: asyncio.Task[None] | None = None
        self.missing: set[int] = set()
        self.repaired = 0
        self.duplicates = 0
        self.given_up = 0
        self.rtt = RTT_INITIAL
        self._rtt_timed = False

    def add(self, packet: RtpPacket) -> bool:
        now = self._clock()
        seq = packet.sequence_number
        stream = self._streams.get(packet.ssrc)
        if stream is None:
            self._streams[packet.ssrc] = _Stream(seq, now)
            return False
        ahead = (seq - stream.max_seq) & 0xFFFF
        stale = now - stream.arrived_at > STALE_GAP
        stream.arrived_at = now
        due: set[int] = set()
        if 0 < ahead < 0x8000:
            gap = min(ahead, TRACKED) - 1  # packets missing in front of this one that can still be asked for
            due = {(seq - back) & 0xFFFF for back in range(1, 1 + (min(gap, self._outage_nacks) if stale else gap))}
            stream.max_seq = seq
            for lost in due:
                stream.missing[lost] = _Missing(now, RETRIES if stale else 1)  # an outage's: asked for once
            if stale and gap:
                self.given_up += gap - len(due)
                self._lost(packet.ssrc)
            self._forget_old(packet.ssrc, stream)
        else:
            entry = stream.missing.pop(seq, None)
            if entry is not None:
                self.repaired += 1
                if entry.tries == 1:  # Karn: a repair after several NACKs does not say which one it answers
                    self._time_repair(now - entry.nacked_at)
            else:
                self.duplicates += 1
        # retries go out from the timer, not here: this runs for every packet
        if stream.missing and self._timer is None:
            self._timer = asyncio.ensure_future(self._retry())
        self.missing = due
        return bool(due)

    def _time_repair(self, sample: float) -> None:
        sample = min(RTT_MAX, max(RTT_MIN, sample))
        self.rtt = sample if not self._rtt_timed else 0.875 * self.rtt + 0.125 * sample
        self._rtt_timed = True

    def _lost(self, ssrc: int) -> None:
        if self.on_lost is not None:
            self.on_lost(ssrc)

    def _forget_old(self, ssrc: int, stream: _Stream) -> None:
        old = [s for s in stream.missing if (stream.max_seq - s) & 0xFFFF > TRACKED]
        for seq in old:
            del stream.missing[seq]
        if old:
            self.given_up += len(old)
            self._lost(ssrc)

    def _overdue(self, ssrc: int, stream: _Stream, now: float) -> set[int]:
        """The missing packets whose last NACK is a round trip old, marked as NACKed again now; those past their
        last try or their window are given up."""
        wait = self.rtt * RETRY_MARGIN
        due: set[int] = set()
        abandoned = 0
        for seq, entry in list(stream.missing.items()):
            if now - entry.nacked_at < wait:
                continue
            if entry.tries >= RETRIES or now - entry.missed_at >= WINDOW:
                del stream.missing[seq]
                abandoned += 1
                continue
            entry.tries += 1
            entry.nacked_at = now
            due.add(seq)
        if abandoned:
            self.given_up += abandoned
            self._lost(ssrc)
        return due

    async def _retry(self) -> None:
        try:
            while any(stream.missing for stream in self._streams.values()):
                await asyncio.sleep(TICK)
                now = self._clock()
                for ssrc, stream in list(self._streams.items()):
                    due = self._overdue(ssrc, stream, now)
                    if due:
                        await self._receiver._send_rtcp_nack(ssrc, sorted(due))
        finally:
            self._timer = None

    def stop(self) -> None:
        """Cancel the retry timer and forget what is missing (the receiver stopped)."""
        self._streams.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


def install(receiver: RTCRtpReceiver, outage_nacks: int = STALE_NACKS) -> RetryingNackGenerator:
    """Put a retrying generator in ``receiver`` (video: in place of aiortc's; audio: where aiortc has none, with
    ``outage_nacks=0``). Idempotent: a receiver keeps its generator across renegotiations."""
    if not hasattr(receiver, NAME):
        raise IncompatibleAiortc(f"RTCRtpReceiver has no {NAME}")
    current = getattr(receiver, NAME)
    if isinstance(current, RetryingNackGenerator):
        return current
    generator = RetryingNackGenerator(receiver, outage_nacks=outage_nacks)
    setattr(receiver, NAME, generator)
    stop = receiver.stop

    async def stop_and_cancel() -> None:
        generator.stop()
        await stop()

    receiver.stop = stop_and_cancel  # type: ignore[method-assign]
    return generator


def of(receiver: RTCRtpReceiver) -> RetryingNackGenerator | None:
    """The retrying generator installed in ``receiver``, if any."""
    generator = getattr(receiver, NAME, None)
    return generator if isinstance(generator, RetryingNackGenerator) else None
