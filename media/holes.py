"""The sequence numbers a consumer's stream skipped: what its subscriber's receiver reports count as lost though
its downlink lost none of them.

The relay forwards a layer with one sequence offset, so a packet lost upstream (on the publisher's uplink) leaves
a hole in the stream it sends on, and a layer switch after a cut-short frame leaves one on purpose. A receiver
report counts every hole below its highest sequence number as lost; the subscriber's downlink estimate must count
only what the relay sent and the link lost. Holes are kept in an extended (never wrapping) numbering, as ranges,
until the packet comes after all (a NACK's repair from the publisher, or reordering). A hole filled moments
before a report arrived was still a hole when the subscriber wrote it, so fills are kept with their time.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import deque

RANGES_KEPT = 256  # older holes are forgotten: reports come every second, these span far more
FILLS_KEPT = 10.0  # s a filled hole is remembered (reports come about every second, round trips stay under 2 s)


class Holes:
    """The sequence numbers skipped so far in one outgoing stream, and those filled lately, with when."""

    def __init__(self) -> None:
        self.first: int | None = None  # extended number of the first packet sent
        self._next: int | None = None  # extended number of the next new packet
        self._starts: list[int] = []  # holes as sorted, disjoint ranges [start, end)
        self._ends: list[int] = []
        self._fills: deque[tuple[float, int]] = deque()  # (when, number) of each hole filled lately, oldest first

    def extend(self, seq: int) -> int:
        """The extended number of 16-bit ``seq``: the one nearest the newest sent."""
        if self._next is None:
            return seq
        return self._next + ((seq - self._next + 0x8000) & 0xFFFF) - 0x8000

    def sent(self, seq: int, now: float) -> None:
        """Note a packet sent with 16-bit ``seq`` at ``now``: past the newest, the numbers in between are holes;
        below it, it fills its hole, if it was one."""
        number = self.extend(seq)
        if self.first is None:
            self.first = number
        if self._next is None or number >= self._next:
            if self._next is not None and number > self._next:
                self._starts.append(self._next)
                self._ends.append(number)
                if len(self._starts) > RANGES_KEPT:
                    del self._starts[0], self._ends[0]
            self._next = number + 1
            return
        i = bisect_right(self._starts, number) - 1
        if i < 0 or number >= self._ends[i]:
            return  # sent before: a resend
        start, end = self._starts[i], self._ends[i]
        del self._starts[i], self._ends[i]
        for a, b in ((number + 1, end), (start, number)):  # what is left of it, on either side
            if a < b:
                self._starts.insert(i, a)
                self._ends.insert(i, b)
        self._fills.append((now, number))
        while self._fills[0][0] < now - FILLS_KEPT:
            self._fills.popleft()

    def between(self, after: int, upto: int, at: float) -> int:
        """How many numbers in (``after``, ``upto``] were holes at time ``at``."""
        count = sum(1 for when, number in self._fills if when > at and after < number <= upto)
        for i in range(bisect_right(self._ends, after), len(self._starts)):
            start, end = self._starts[i], self._ends[i]
            if start > upto:
                break
            count += max(0, min(end, upto + 1) - max(start, after + 1))
        return count

    def filled(self, upto: int, since: float, until: float) -> int:
        """How many holes numbered up to ``upto`` were filled after ``since``, up to ``until``."""
        return sum(1 for when, number in self._fills if since < when <= until and number <= upto)
