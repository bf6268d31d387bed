"""Link quality from raw figures: an E-model MOS, a smoothed grade, and a bounded history. Pure, no I/O.

The MOS is the simplified ITU-T G.107 E-model many VoIP tools use (PingPlotter's form; DESIGN.md §5):

* effective latency ``d = RTT/2 + 2·jitter + 10`` ms;
* ``R = 93.2 − d/40`` for ``d < 160``, else ``R = 93.2 − (d − 120)/10``;
* ``R −= 2.5 × loss%``;
* ``MOS = 1 + 0.035·R + 7·10⁻⁶·R·(R − 60)·(100 − R)``, clamped to 1..4.5.

Grades: ``excellent`` (MOS ≥ 4.2, loss under about 2 % on a short path), ``good`` (≥ 3.7, loss under about 8 %),
``poor`` below that, ``lost`` when no packet arrived from the participant in a whole sample interval.
Smoothing: an EWMA of the MOS that follows a worsening link faster than a recovering one (a doctor must see a
failing link within seconds; a link that just recovered should prove it), and hysteresis on the way up (a grade
rises only once the smoothed MOS clears its threshold by ``HYSTERESIS``), so a MOS hovering on a threshold does
not make the indicator flicker. Counters are read every ``SAMPLE_INTERVAL``; the room is told every
``REPORT_INTERVAL``, and at once when the grade changes.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any, Literal

Grade = Literal["excellent", "good", "poor", "lost"]

EXCELLENT_MOS = 4.2
GOOD_MOS = 3.7
HYSTERESIS = 0.1
SAMPLE_INTERVAL = 1.0  # seconds between reads of a participant's counters
REPORT_INTERVAL = 2.0  # seconds between reports to the room, unless the grade changes (reported at once)
# weights of a new sample worse / better than the smoothed MOS: 80 % / 40 % of the way in 2 s, whatever the
# sample interval (two lossy seconds → poor). Read every second, the grade does not wait for a 2 s window that
# began before the loss did (measured: 10 % loss missed 5 s after it began in ~10 % of tries with 2 s reads).
ALPHA_WORSE = 1 - 0.2 ** (SAMPLE_INTERVAL / 2.0)
ALPHA_BETTER = 1 - 0.6 ** (SAMPLE_INTERVAL / 2.0)
HISTORY_SECONDS = 300.0


def effective_latency_ms(rtt_ms: float, jitter_ms: float) -> float:
    return rtt_ms / 2 + 2 * jitter_ms + 10


def r_factor(rtt_ms: float, jitter_ms: float, loss: float) -> float:
    """E-model R for a round-trip time and jitter in ms and a loss fraction (0..1)."""
    d = effective_latency_ms(max(rtt_ms, 0.0), max(jitter_ms, 0.0))
    r = 93.2 - d / 40 if d < 160 else 93.2 - (d - 120) / 10
    return r - 2.5 * (min(max(loss, 0.0), 1.0) * 100)


def mos(rtt_ms: float, jitter_ms: float, loss: float) -> float:
    """Mean opinion score 1..4.5 (see the module docstring for the formula)."""
    r = r_factor(rtt_ms, jitter_ms, loss)
    if r <= 0:
        return 1.0
    score = 1 + 0.035 * r + 7e-6 * r * (r - 60) * (100 - r)
    return min(max(score, 1.0), 4.5)


def grade_of(score: float) -> Grade:
    """The grade of a MOS, without smoothing."""
    if score >= EXCELLENT_MOS:
        return "excellent"
    if score >= GOOD_MOS:
        return "good"
    return "poor"


_RANK: dict[Grade, int] = {"lost": 0, "poor": 1, "good": 2, "excellent": 3}
_THRESHOLD: dict[Grade, float] = {"good": GOOD_MOS, "excellent": EXCELLENT_MOS}


class GradeSmoother:
    """EWMA of the MOS (faster down than up) and a grade with hysteresis on the way up."""

    def __init__(self) -> None:
        self.mos: float | None = None
        self.grade: Grade | None = None

    def update(self, score: float | None) -> tuple[Grade, float]:
        """Feed one sample's MOS (None: nothing arrived, the link is lost); returns (grade, smoothed MOS)."""
        if score is None:
            self.grade = "lost"
            self.mos = 1.0
            return "lost", 1.0
        if self.mos is None or self.grade == "lost":
            self.mos = score
        else:
            alpha = ALPHA_WORSE if score < self.mos else ALPHA_BETTER
            self.mos = alpha * score + (1 - alpha) * self.mos
        target = grade_of(self.mos)
        if self.grade is None or self.grade == "lost" or _RANK[target] <= _RANK[self.grade]:
            self.grade = target
        else:  # rising: each step up must clear its threshold with a margin
            while _RANK[self.grade] < _RANK[target]:
                up: Grade = "good" if self.grade == "poor" else "excellent"
                if self.mos < _THRESHOLD[up] + HYSTERESIS:
                    break
                self.grade = up
        return self.grade, self.mos


@dataclass(frozen=True)
class LinkSample:
    """One participant's link over one sample interval, as the ``link-quality`` event carries it."""

    participantId: str
    at: float  # unix time of the sample
    grade: Grade
    mos: float
    rttMs: float | None
    jitterMs: float | None
    lossUp: float | None  # fraction 0..1 of the participant's packets that did not reach the server
    lossDown: float | None  # fraction 0..1 of the server's packets that did not reach the participant
    sendKbps: float  # what the participant sends (the server receives)
    recvKbps: float  # what the participant receives (the server sends)
    rembKbps: float | None  # the server's estimate of the participant's uplink (REMB), None until known
    rembDownKbps: float | None  # the participant's estimate of its downlink (its REMB to the server)
    candidate: dict[str, str] | None  # {local, remote, protocol} of the ICE pair in use
    adaptation: dict[str, Any] | None = None  # what the relay does for this link now (``Router.adaptation``)

    def payload(self) -> dict[str, Any]:
        return asdict(self)


class History:
    """The last ``HISTORY_SECONDS`` of samples of one participant."""

    def __init__(self, seconds: float = HISTORY_SECONDS, interval: float = REPORT_INTERVAL) -> None:
        self._samples: deque[LinkSample] = deque(maxlen=max(1, int(seconds / interval)))

    def add(self, sample: LinkSample) -> None:
        self._samples.append(sample)

    def __iter__(self) -> Iterator[LinkSample]:
        return iter(self._samples)

    def __len__(self) -> int:
        return len(self._samples)
