"""What each subscriber receives: audio first, then for each video the layer its downlink can carry, or none.

Every ``TICK`` seconds a participant's ``Downlink`` estimates what its downlink carries and shares that budget
out among the consumers on its connection, without touching what anyone else receives:

* the **estimate** starts at ``start_kbps`` and follows the subscriber's receiver reports: their loss (above 10 %
  the estimate drops to what was sent × (1 − loss/2), below 2 % it may grow by 5 % a report, as GCC's loss
  controller does, though not past what arrived when the link last overflowed, for ``CEILING_HOLD`` seconds. The
  loss counted is what the subscriber's own downlink lost, ``Consumer.downlink_loss``: not the packets that never
  reached the relay (a weak publisher's uplink, its cut link), so that one weak site does not lower what everyone
  else is sent; and less the link's own random loss, measured while the round trip shows no queue, within two
  standard deviations) and the round-trip time they give: a round trip grown well above the
  lowest seen lately (over medians of three reports) means a queue is filling on the way (the estimate drops to
  85 % of what was sent, or of the estimate when far less was sent). The subscriber's REMB is not
  used: it never exceeds 1.5 × what it received, lags every layer switch by seconds, and an aiortc peer's
  estimator mistakes a busy event loop for a queue;
* **audio first**: every audio stream is budgeted before any video. Only when even the audio does not fit (an
  audio-only site's 64 kbit/s) are the quietest speakers left out, never the loudest;
* **video**: the lowest layer for as many videos as fit, loudest speaker first, then one layer up at a time,
  round-robin; a video whose lowest layer does not fit is **paused** (its tile says so) until the budget grows;
* **probing**: feedback about what is sent says nothing about what more the link would carry, so the only way
  to learn that it carries the next layer is to try it. When the allocation is held back by the estimate and the
  link shows no loss, the next step up is tried for ``TRIAL`` seconds; loss or a growing round trip ends the
  trial and doubles the wait
  before the next one (``PROBE_WAIT`` up to ``PROBE_WAIT_MAX``), a trial that holds becomes the new estimate; no
  trial starts before the subscriber's first report;
* **outages**: the first report after seconds without any (a cut link) is not taken as congestion, so the
  subscriber gets back what it had when its link returns, and probing starts again after ``PROBE_WAIT``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from .forwarder import PACKET_OVERHEAD, Consumer

logger = logging.getLogger(__name__)

TICK = 0.5  # seconds between allocations
HEADROOM = 0.9  # share of the estimate handed out
UP_MARGIN = 1.15  # a layer above the current one must fit with this margin (no flapping on the boundary)
MIN_BPS = 30_000
MAX_BPS = 20_000_000
LOSS_HIGH = 0.10  # loss above this (outside a trial) lowers the estimate
LOSS_LOW = 0.02  # loss below this lets the estimate grow and trials start
TRIAL_LOSS = 0.02  # loss above this ends a trial (the trial's overflow drops audio too, FEC repairs little of it)
DECREASE = 0.85  # on a growing round trip, the estimate drops to this share of what was sent
GROWTH = 1.05  # per tick with a loss report under LOSS_LOW, bounded by 1.5 × what was sent
QUEUE_DELAY = 0.1  # s: round trips this much (+25 %) above the lowest one seen lately...
QUEUE_REPORTS = 3  # ...this many reports in a row: a queue is filling
SENT_WINDOW = 4  # ticks over which what was sent is averaged (frames and keyframes make single ticks bursty)
BASE_RTT_WINDOW = 30.0  # s over which the lowest round trip is kept
TRIAL = 3.0
DECREASE_HOLD = 0.5  # s (plus a round trip) after a decrease during which congestion is the same episode
SILENCE = 2.5  # s without any receiver report: the subscriber's link was cut (reports come about every second)
RETURN_GRACE = 2.5  # s after the first report that ends a silence during which reports may count the cut's loss
PROBE_WAIT = 2.0
PROBE_WAIT_MAX = 16.0  # a long link fails trials often; a minute between them left its video stuck
LOSS_FLOOR_PACKETS = 100  # reported packets (on a link without a queue) before its random loss is known
LOSS_FLOOR_MAX = 0.2  # more loss than this is never taken for the link's own
CEILING_HOLD = 30.0  # after congestion at some rate, no trial goes that high for this long
TRIAL_GROWTH_MAX = 1.5  # after congestion, no trial asks for more than this times the estimate
CUT_LOSS = 0.8  # more loss than this in a report is a cut link (for a moment), not a full one: it sets no ceiling


@dataclass(frozen=True)
class VideoNeed:
    """One video to place: its active layers ``(index, bit/s)``, lowest first, and the layer it is on now."""

    layers: tuple[tuple[int, float], ...]
    current: int | None

    def cost(self, position: int) -> float:
        """What layer ``layers[position]`` takes from the budget: more when it is above the current one."""
        index, rate = self.layers[position]
        return rate * (UP_MARGIN if self.current is None or index > self.current else 1.0)


@dataclass(frozen=True)
class AudioNeed:
    rate: float  # bit/s
    level: float  # -dBov, 0 loudest


def allocate_audio(budget: float, audio: list[AudioNeed]) -> tuple[list[bool], float]:
    """Which audio streams to forward (all that fit, loudest first; the loudest always) and what they cost."""
    order = sorted(range(len(audio)), key=lambda i: audio[i].level)
    chosen = [False] * len(audio)
    spent = 0.0
    for rank, i in enumerate(order):
        if rank == 0 or spent + audio[i].rate <= budget:
            chosen[i] = True
            spent += audio[i].rate
    return chosen, spent


def allocate_video(budget: float, videos: list[VideoNeed]) -> tuple[list[int | None], float, float | None]:
    """A layer index (None: paused) for each video, in priority order (see the module docstring); what that
    costs; and the smallest extra budget that would move one video a step up (None: all are at the top)."""
    positions: list[int | None] = [None] * len(videos)
    spent = 0.0
    for i, video in enumerate(videos):
        if video.layers and spent + video.cost(0) <= budget:
            positions[i] = 0
            spent += video.cost(0)
    grown = True
    while grown:
        grown = False
        for i, video in enumerate(videos):
            position = positions[i]
            if position is None or position + 1 >= len(video.layers):
                continue
            extra = video.cost(position + 1) - video.cost(position)
            if spent + extra <= budget:
                positions[i] = position + 1
                spent += extra
                grown = True
    steps = []
    for video, position in zip(videos, positions, strict=True):
        if position is None and video.layers:
            steps.append(video.cost(0))
        elif position is not None and position + 1 < len(video.layers):
            steps.append(video.cost(position + 1) - video.cost(position))
    chosen = [None if p is None else videos[i].layers[p][0] for i, p in enumerate(positions)]
    return chosen, spent, min(steps) if steps else None


@dataclass
class Estimate:
    """The subscriber's downlink in bit/s, with the probing state (see the module docstring).

    Until the first congestion (``slow_start``) a trial asks for twice what is sent, so a good link reaches its
    top layers in a few trials; after it, one step at a time, no step above ``TRIAL_GROWTH_MAX`` times the estimate
    (a full layer on top of two half ones more than doubled what a 250 kbit/s link was sent), and never above what
    arrived when the link congested (``ceiling``: what was sent, less the loss) for ``CEILING_HOLD`` seconds. A
    ceiling set by loss (the link overflowed) also bounds the estimate's growth; one set by a growing round trip,
    which a busy receiver can fake, bounds only trials.
    """

    bps: float
    probe_wait: float = PROBE_WAIT
    next_probe: float = 0.0
    trial_until: float = 0.0
    before_trial: float = 0.0
    slow_start: bool = True
    ceiling: float = 0.0
    ceiling_until: float = 0.0
    ceiling_from_loss: bool = False
    hold_until: float = 0.0

    @property
    def probing(self) -> bool:
        return self.trial_until > 0

    def feedback(self, now: float, sent: float, loss: float | None, queuing: bool, rtt: float | None = None) -> None:
        """One tick's feedback: what was sent (bit/s), the loss reported since (None: no report), whether the
        round trip says a queue is filling, and the round trip (s).

        After a decrease, further signs of congestion within ``DECREASE_HOLD`` + a round trip are the same episode
        (the reports still describe what was sent before it, as GCC's decrease interval says): ignored, or one
        congested moment on a long link would halve the estimate again and again and double the probe wait each time.
        """
        lossy = loss is not None and loss > (TRIAL_LOSS if self.probing else LOSS_HIGH)
        if (lossy or queuing) and now < self.hold_until:
            return
        if lossy or queuing:
            self.hold_until = now + DECREASE_HOLD + (rtt or 0.0)
            # a queue while far less than the estimate was sent (an audio-only moment, delay varying on a long
            # link) lowers the estimate, not the rate sent: 85 % of 40 kbit/s of audio would pause every video
            queued = (sent if sent >= 0.7 * self.bps else self.bps) * DECREASE
            bound = sent * (1 - (loss or 0) / 2) if lossy else queued
            if queuing and lossy:
                bound = min(bound, queued)
            if self.probing:
                bound = min(bound, self.before_trial)
            overflowed = lossy and (loss or 0.0) <= CUT_LOSS  # not a cut link: what arrived is what it carries
            if overflowed or sent >= 0.7 * self.bps:  # the link was full: its limit is about what arrived
                self.ceiling = sent * (1 - (loss or 0.0)) if overflowed else sent
                self.ceiling_until, self.ceiling_from_loss = now + CEILING_HOLD, overflowed
            self.slow_start = False
            self.bps = max(MIN_BPS, min(self.bps, max(bound, self.bps / 2)))  # at most halved per event
            self.trial_until = 0.0
            self.probe_wait = min(self.probe_wait * 2, PROBE_WAIT_MAX)
            self.next_probe = now + self.probe_wait
        elif self.probing:
            if now >= self.trial_until:  # the trial held: its rate is the new estimate
                self.trial_until = 0.0
                self.probe_wait = PROBE_WAIT
                self.next_probe = now
        elif loss is not None and loss < LOSS_LOW:
            grown = min(self.bps * GROWTH, 1.5 * sent + 50_000)
            if now < self.ceiling_until and self.ceiling_from_loss:  # not past what arrived when the link overflowed
                grown = min(grown, self.ceiling)
            self.bps = min(MAX_BPS, max(self.bps, grown))

    def link_returned(self, now: float) -> None:
        """The link is back after an outage: probe again soon, whatever waits earlier congestion had built up."""
        self.trial_until = 0.0
        self.probe_wait = PROBE_WAIT
        self.next_probe = now + PROBE_WAIT
        self.hold_until = 0.0

    def try_step(self, now: float, spent: float, step: float) -> bool:
        """Start a trial of a budget of ``spent + step`` (bit/s) if one is due; True when one started."""
        if self.probing or now < self.next_probe:
            return False
        target = max(spent + step, 2 * spent) if self.slow_start else spent + step
        target *= 1.01  # the step must fit, rounding included
        if now < self.ceiling_until and target >= self.ceiling:
            return False
        if not self.slow_start and target > TRIAL_GROWTH_MAX * self.bps:  # the estimate grows towards it first
            return False
        self.before_trial = self.bps
        self.bps = min(MAX_BPS, max(self.bps, target / HEADROOM))
        self.trial_until = now + TRIAL
        return True


@dataclass
class Reports:
    """When the subscriber's receiver reports last came: a link cut for seconds (an outage) sends none, and the
    reports just after it say how much the cut lost, which says nothing about what the link carries. Not only the
    first: one sent as the link came back may cover nothing yet, and the next the whole gap (traced on EDGE: 80 %
    loss in the second report set a 20 kbit/s ceiling that kept the video paused for 30 s)."""

    heard_at: float = 0.0
    returned_at: float = -RETURN_GRACE

    def ends_silence(self, now: float) -> bool:
        """Note a report now; True when none came for ``SILENCE`` seconds before it."""
        silent = now - self.heard_at > SILENCE
        if silent and self.heard_at > 0:  # the very first report ends no outage
            self.returned_at = now
        self.heard_at = now
        return silent

    def returning(self, now: float) -> bool:
        """Whether a report now may still count the outage's loss (within ``RETURN_GRACE`` of the first after it)."""
        return now - self.returned_at < RETURN_GRACE


@dataclass
class _Sent:
    octets: int = 0
    packets: int = 0


@dataclass
class DownlinkState:
    """What adaptation is active for one subscriber, as its page and the link-quality data show it."""

    estimateKbps: float
    videos: dict[str, dict[str, Any]] = field(default_factory=dict)  # publisher id -> {layer, layers, paused, ...}
    audioOff: list[str] = field(default_factory=list)  # publishers whose audio is left out (budget too small)
    capKbps: float | None = None  # the cap on this subscriber's downlink (a point's cap, audio-only's budget)
    audioOnly: bool = False  # this subscriber gets no video at all

    def payload(self) -> dict[str, Any]:
        return {"estimateKbps": self.estimateKbps, "videos": self.videos, "audioOff": self.audioOff,
                "capKbps": self.capKbps, "audioOnly": self.audioOnly}


Consumers = Callable[[], Iterable[Consumer]]
Changed = Callable[[DownlinkState], None]


class Downlink:
    """One participant's downlink: estimates it every ``TICK`` and sets each of its consumers' layer."""

    def __init__(self, consumers: Consumers, start_kbps: float, changed: Changed | None = None) -> None:
        self.estimate = Estimate(start_kbps * 1000)
        self.cap_bps: float | None = None  # the site's downlink cap (``limits.py``)
        self.video_off = False  # audio-only: no video at all
        self.state = DownlinkState(round(start_kbps, 1))
        self._consumers = consumers
        self._changed = changed
        self._sent: dict[Consumer, _Sent] = {}
        self._rtts: deque[tuple[float, float]] = deque()  # (when, median of the last 3 round trips s) per fresh one
        self._recent_rtts: deque[float] = deque(maxlen=3)
        self._rates: deque[float] = deque(maxlen=SENT_WINDOW)  # bit/s sent in each of the last ticks
        self._high_rtts = 0  # reports in a row whose round trip was high
        self._queue_free = True  # the last round trip was near the lowest: no queue, loss now is the link's own
        self._link_loss: deque[tuple[float, float, float]] = deque()  # (when, lost, reported) without a queue
        self._reports = Reports()
        self._at = 0.0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())

    def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(TICK)
            try:
                self.tick(time.monotonic())
            except Exception:  # an allocation must never end the loop
                logger.exception("downlink allocation failed")

    def tick(self, now: float) -> None:
        consumers = [c for c in self._consumers() if c.active and c.producer.layers]
        elapsed = now - self._at if self._at else TICK
        self._at = now
        tick_bps, lost, reported, rtt = self._feedback(consumers, now, elapsed)
        self._rates.append(tick_bps)
        sent_bps = sum(self._rates) / len(self._rates)
        queuing = rtt is not None and self._queuing(now, rtt, 1 if self.estimate.probing else QUEUE_REPORTS)
        loss = self._congestion_loss(now, lost, reported) if reported else None
        if reported and self._reports.ends_silence(now):
            loss = None  # the first report after a silence counts what the cut link lost: not congestion
            self.estimate.link_returned(now)
        elif reported and self._reports.returning(now):
            loss = None  # nor do the next ones, within RETURN_GRACE
        logger.debug("downlink: sent %.0f bit/s, loss %s, rtt %s s%s, estimate %.0f bit/s%s", sent_bps, loss, rtt,
                     " (queuing)" if queuing else "", self.estimate.bps, " (trial)" if self.estimate.probing else "")
        self.estimate.feedback(now, sent_bps, loss, queuing, rtt)
        budget = self.estimate.bps * HEADROOM
        if self.cap_bps is not None:
            budget = min(budget, self.cap_bps)

        audio = [c for c in consumers if c.producer.kind == "audio"]
        audio_needs = [AudioNeed(sum(layer.rate for layer in c.producer.measure(now)), c.producer.level)
                       for c in audio]
        chosen_audio, audio_bps = allocate_audio(budget, audio_needs)
        for consumer, on in zip(audio, chosen_audio, strict=True):
            consumer.set_target(0 if on else None)

        levels = {c.producer.participant_id: c.producer.level for c in audio}
        withheld = [c for c in consumers if c.producer.kind == "video" and c.producer.withheld]
        for consumer in withheld:  # its site is audio-only: nobody gets its video
            consumer.set_target(None)
        video = sorted((c for c in consumers if c.producer.kind == "video" and not c.producer.withheld),
                       key=lambda c: (levels.get(c.producer.participant_id, 127.0), c.producer.participant_id))
        needs = [VideoNeed(tuple((layer.index, layer.rate) for layer in c.producer.measure(now)
                                 if layer.active and layer.rate > 0), c.target) for c in video]
        video_budget = 0.0 if self.video_off else budget - audio_bps
        chosen, spent, step = allocate_video(video_budget, needs)
        capped = self.cap_bps is not None and self.estimate.bps * HEADROOM >= self.cap_bps
        heard = self._reports.heard_at > 0  # no trial before the first report: a trial needs its feedback
        if step is not None and heard and not self.video_off and not capped and not (loss or 0) > LOSS_LOW:
            if self.estimate.try_step(now, audio_bps + spent, step):
                chosen, _, _ = allocate_video(self.estimate.bps * HEADROOM - audio_bps, needs)
        for consumer, need, layer in zip(video, needs, chosen, strict=True):
            if need.layers or self.video_off:  # a publisher sending nothing (its link cut) is not paused: its
                consumer.set_target(layer)  # subscribers take its first keyframe when it is back, not a tick later
        self._report(audio, chosen_audio, video, needs, chosen, withheld, capped)

    def _feedback(self, consumers: list[Consumer], now: float,
                  elapsed: float) -> tuple[float, float, float, float | None]:
        """(bit/s sent this tick, packets lost and reported since the last tick, the median fresh round trip)."""
        sent_bits = 0.0
        lost = reported = 0.0
        rtts = []
        seen: dict[Consumer, _Sent] = {}
        for consumer in consumers:
            octets, packets = consumer.sent()
            before = self._sent.get(consumer, _Sent(octets, packets))
            seen[consumer] = _Sent(octets, packets)
            sent_bits += ((octets - before.octets) + (packets - before.packets) * PACKET_OVERHEAD) * 8
            counted = consumer.downlink_loss()
            if counted is not None:
                lost += counted[0]
                reported += counted[1]
            feedback = consumer.feedback
            if feedback.rtt is not None and feedback.rtt_at > now - elapsed:
                rtts.append(feedback.rtt)
        self._sent = seen
        rtt = sorted(rtts)[len(rtts) // 2] if rtts else None
        return sent_bits / elapsed, lost, reported, rtt

    def _congestion_loss(self, now: float, lost: float, reported: float) -> float:
        """The share of ``reported`` packets lost beyond the link's own random loss (radio, a bad line), which
        sending less does not lower: that is the pooled loss of the last ``BASE_RTT_WINDOW`` seconds' reports
        while the round trip showed no queue (a full drop-tail queue raises it), and what it explains within two
        standard deviations is not congestion. Without this, 10 % random loss ends every trial and halves the
        estimate again and again."""
        while self._link_loss and self._link_loss[0][0] < now - BASE_RTT_WINDOW:
            self._link_loss.popleft()
        pooled_lost = sum(item[1] for item in self._link_loss)
        pooled = sum(item[2] for item in self._link_loss)
        floor = min(LOSS_FLOOR_MAX, pooled_lost / pooled) if pooled >= LOSS_FLOOR_PACKETS else 0.0
        if self._queue_free:
            self._link_loss.append((now, lost, reported))
        noise = 2 * (floor * (1 - floor) / reported) ** 0.5
        return max(0.0, lost / reported - floor - noise)

    def _queuing(self, now: float, rtt: float, reports: int) -> bool:
        """Whether the last ``reports`` round trips are all well above the lowest of the last
        ``BASE_RTT_WINDOW`` seconds: a queue that fills stays full for seconds, while a subscriber's busy moment
        (a loaded browser or test process) delays a report or two. The lowest is taken over medians of three
        reports in a row: on a lossy link a report now and then gives a round trip far below the real one
        (0.15 s on a 1 s link), and a lowest round trip that low made every later report look like a queue."""
        while self._rtts and self._rtts[0][0] < now - BASE_RTT_WINDOW:
            self._rtts.popleft()
        self._recent_rtts.append(rtt)
        recent = sorted(self._recent_rtts)
        self._rtts.append((now, recent[(len(recent) - 1) // 2]))
        base = min(r for _, r in self._rtts)
        self._queue_free = rtt <= base * 1.25 + QUEUE_DELAY
        self._high_rtts = 0 if self._queue_free else self._high_rtts + 1
        if self._high_rtts >= reports:
            self._high_rtts = 0
            return True
        return False

    def _report(self, audio: list[Consumer], chosen_audio: list[bool], video: list[Consumer],
                needs: list[VideoNeed], chosen: list[int | None], withheld: list[Consumer], capped: bool) -> None:
        videos: dict[str, dict[str, Any]] = {}
        for consumer, need, layer in zip(video, needs, chosen, strict=True):
            paused = layer is None and bool(need.layers)  # by us: its publisher does send video
            videos[consumer.producer.participant_id] = {
                "layer": layer,
                "layers": len(need.layers),
                "top": layer is not None and bool(need.layers) and layer == need.layers[-1][0],
                "paused": paused,
                # why: this site is audio-only, its cap leaves no room, or its link carries too little
                "reason": None if not paused else "audio-only" if self.video_off else "cap" if capped else "weak-link",
                "publisherAudioOnly": False,
            }
        for consumer in withheld:
            videos[consumer.producer.participant_id] = {"layer": None, "layers": 0, "top": False, "paused": False,
                                                        "reason": None, "publisherAudioOnly": True}
        state = DownlinkState(
            round(self.estimate.bps / 1000, 1), videos,
            sorted(c.producer.participant_id for c, on in zip(audio, chosen_audio, strict=True) if not on),
            None if self.cap_bps is None else round(self.cap_bps / 1000, 1), self.video_off)
        changed = ((state.videos, state.audioOff, state.capKbps, state.audioOnly) !=
                   (self.state.videos, self.state.audioOff, self.state.capKbps, self.state.audioOnly))
        self.state = state
        if changed and self._changed is not None:
            self._changed(state)
