"""Samples one participant's link every ``SAMPLE_INTERVAL`` seconds and reports it as ``link-quality`` every
``REPORT_INTERVAL`` seconds, or at once when its grade changes.

Reads only what aiortc keeps anyway (``getStats`` of the participant's receivers and senders, the DTLS transport's
byte counters, the ICE pair, the REMB estimates through ``hooks``): nothing on the per-packet path.

* uplink (participant → server): the RTCP receiver statistics of its published media streams (``hooks``:
  ``getStats()`` would give the retransmission stream's once there is one): loss from the deltas of
  lost/received, jitter;
* downlink (server → participant): ``remote-inbound-rtp`` of its consumers' senders, i.e. the participant's own
  receiver reports: loss from the deltas of the cumulative counters, jitter → ms, ``roundTripTime`` (seconds,
  present only once a receiver report echoed one of our sender reports);
* bitrates from the transport's byte counters; REMB: aiortc's estimate of the uplink, and the last REMB the
  participant sent about the streams it receives (its downlink estimate).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiortc import RTCPeerConnection

from . import hooks
from .quality import REPORT_INTERVAL, SAMPLE_INTERVAL, GradeSmoother, History, LinkSample, mos

logger = logging.getLogger(__name__)

CLOCK_RATE = {"audio": 48000, "video": 90000}
REMB_FRESH = 10.0  # seconds a participant's REMB stays meaningful
LOST_AFTER = 2.0  # seconds without a byte from the participant (RTCP comes every 0.5–1.5 s) before it is lost

Report = Callable[[LinkSample], Awaitable[None]]
Adaptation = Callable[[], dict[str, Any]]


@dataclass
class _Counters:
    received: int = 0
    lost: int = 0


def _loss(now: dict[Any, _Counters], before: dict[Any, _Counters]) -> float | None:
    received = lost = 0
    for key, c in now.items():
        b = before.get(key, _Counters())
        received += max(c.received - b.received, 0)
        lost += max(c.lost - b.lost, 0)
    total = received + lost
    return lost / total if total else None


class LinkMeter:
    """One participant's sampler. ``pc`` is asked for each sample, so a restarted connection is picked up."""

    def __init__(self, participant_id: str, pc: Callable[[], RTCPeerConnection], report: Report,
                 interval: float = SAMPLE_INTERVAL, adaptation: Adaptation | None = None) -> None:
        """``adaptation``: what the relay does for this participant now, put in each sample."""
        self.participant_id = participant_id
        self._adaptation = adaptation
        self.history = History(interval=max(interval, REPORT_INTERVAL))
        self._pc = pc
        self._report = report
        self._interval = interval
        self._smoother = GradeSmoother()
        self._last_pc: RTCPeerConnection | None = None
        self._up: dict[Any, _Counters] = {}
        self._down: dict[Any, _Counters] = {}
        self._bytes = (0, 0)  # (received, sent) by the server on this participant's transport
        self._at = 0.0
        self._heard_at = 0.0
        self._loss_down: float | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())

    def stop(self) -> None:
        """No sample is reported after this (synchronous, so a leave cannot be interleaved with one)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()

    async def _run(self) -> None:
        reported_at, reported_grade = 0.0, None
        while True:
            await asyncio.sleep(self._interval)
            try:
                sample = await self.sample()
            except Exception:  # a stats read must never end the sampler
                logger.exception("link sample of %s failed", self.participant_id)
                continue
            now = time.monotonic()
            due = now - reported_at >= REPORT_INTERVAL - self._interval / 2
            if sample is not None and (due or sample.grade != reported_grade):
                reported_at, reported_grade = now, sample.grade
                self.history.add(sample)
                await self._report(sample)

    async def sample(self) -> LinkSample | None:
        """Read the counters, compare with the previous sample; None before the connection is up."""
        pc = self._pc()
        if pc is not self._last_pc:  # a new connection (media restart): counters start again
            self._last_pc, self._up, self._down, self._bytes, self._at = pc, {}, {}, (0, 0), 0.0
            self._loss_down = None
        if pc.connectionState != "connected":
            return None if self._smoother.grade is None else self._lost_sample(None)
        receivers = [r for r in pc.getReceivers() if r.transport is not None]
        senders = [s for s in pc.getSenders() if s.transport is not None]
        if not receivers:
            return None
        dtls = receivers[0].transport
        now = time.monotonic()

        up: dict[Any, _Counters] = {}
        up_jitter: list[float] = []
        remb_up = 0
        for receiver in receivers:
            for stream in hooks.received_streams(receiver):
                up[stream.ssrc] = _Counters(stream.received, stream.lost)
                up_jitter.append(stream.jitter_ms)
            remb_up += hooks.uplink_estimate_bps(receiver) or 0

        down: dict[Any, _Counters] = {}
        down_jitter: list[float] = []
        rtts: list[float] = []
        watches = []
        for sender in senders:
            watches.append(hooks.watch_feedback(sender))
            for stats in (await sender.getStats()).values():
                if stats.type == "remote-inbound-rtp":
                    down[id(sender)] = _Counters(stats.packetsReceived, stats.packetsLost)
                    down_jitter.append(stats.jitter / CLOCK_RATE.get(stats.kind, 90000) * 1000)
                    if stats.roundTripTime is not None and stats.roundTripTime >= 0:  # aiortc's can dip below 0
                        rtts.append(stats.roundTripTime * 1000)

        transport_stats = dtls._get_stats()[dtls._stats_id]
        received, sent = transport_stats.bytesReceived, transport_stats.bytesSent
        elapsed = now - self._at if self._at else self._interval
        prev_received, prev_sent = self._bytes
        first = not self._at
        self._bytes, self._at = (received, sent), now
        loss_up, loss_down = _loss(up, self._up), _loss(down, self._down)
        if loss_down is None and down:  # no receiver report this second (they come every 0.5–1.5 s): the last holds
            loss_down = self._loss_down
        self._loss_down = loss_down
        self._up, self._down = up, down
        if first or received != prev_received:
            self._heard_at = now
        elif now - self._heard_at >= LOST_AFTER:  # not even RTCP from the participant: the link is gone
            return self._lost_sample(hooks.nominated_pair(dtls))

        remb_down = hooks.remb_total(watches, since=now - REMB_FRESH) or 0
        rtt = sum(rtts) / len(rtts) if rtts else None
        jitters = up_jitter + down_jitter
        jitter = max(jitters) if jitters else None
        losses = [x for x in (loss_up, loss_down) if x is not None]
        grade, smoothed = self._smoother.update(mos(rtt or 0.0, jitter or 0.0, max(losses, default=0.0)))
        return LinkSample(
            participantId=self.participant_id,
            at=time.time(),
            grade=grade,
            mos=round(smoothed, 2),
            rttMs=None if rtt is None else round(rtt, 1),
            jitterMs=None if jitter is None else round(jitter, 1),
            lossUp=None if loss_up is None else round(loss_up, 4),
            lossDown=None if loss_down is None else round(loss_down, 4),
            sendKbps=round(max(received - prev_received, 0) * 8 / 1000 / elapsed, 1),
            recvKbps=round(max(sent - prev_sent, 0) * 8 / 1000 / elapsed, 1),
            rembKbps=round(remb_up / 1000, 1) if remb_up else None,
            rembDownKbps=round(remb_down / 1000, 1) if remb_down else None,
            candidate=hooks.nominated_pair(dtls),
            adaptation=self._adaptation() if self._adaptation is not None else None,
        )

    def _lost_sample(self, candidate: dict[str, str] | None) -> LinkSample:
        grade, smoothed = self._smoother.update(None)
        return LinkSample(self.participant_id, time.time(), grade, smoothed, None, None, None, None,
                          0.0, 0.0, None, None, candidate,
                          self._adaptation() if self._adaptation is not None else None)
