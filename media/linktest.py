"""The server's side of a link test: one peer connection per path, measured from the server's own observations.

A technician's client (browser or ``hoichan linktest``) answers one offer per path (UDP direct, and TURN over
UDP/TCP/TLS when configured: the client forces those through the TURN server). The server then:

1. **connect**: notes which paths open their data channels, how fast, and over which ICE pair;
2. **ping** (on the best path): a PING every ``ping_interval``; RTT from the PONGs (the server's own clock, its own
   send times), jitter as the mean change between consecutive RTTs, loss each way from the client's receipts
   (proofs: ``linktest_wire``) and the PONGs;
3. **down**, then **up**: a paced flood of DATA probes whose rate doubles each step until the received rate stops
   following it or the RTT of interleaved pings rises (a queue is building at the link's bottleneck). A step that
   built a queue holds its rate a moment longer: what arrives meanwhile leaves a full queue, at the link's rate.
   Throughput is the rate the link kept in the step that filled it (``throughput_kbps``): the server counts the
   client's DATA itself, and learns what the client received only from verified receipts, placed in time by the
   client's clock (``linktest_wire``) so a receipt held back behind a lost one still counts where it belongs.
   Both ends pace their DATA themselves: SCTP's congestion window is off (``hooks.pace_sctp_ourselves``), as it
   would halve on every random loss and measure a TCP-like share of the link instead of what it can carry;
4. **loss**: the smallest probes both ways at once, paced well below the throughput just found (no queue fills, so
   every probe lost is the link's): thousands of samples in a few seconds where the pings give hundreds.

Rates are UDP payload rates (data-channel bytes plus SCTP and DTLS headers), what SRTP media would occupy.
The result is raw measurements; ``signaling/verdict.py`` turns them into words.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from aiortc import RTCConfiguration, RTCDataChannel, RTCPeerConnection, RTCSessionDescription

from . import hooks, linktest_wire as wire
from .errors import MediaError

logger = logging.getLogger(__name__)

PATHS = ("udp", "turn-udp", "turn-tcp", "turn-tls")
OVERHEAD_BYTES = 65  # per DATA message on the wire: SCTP common + DATA chunk headers (28), DTLS 1.2 AES-GCM record (37)
DTLS_OVERHEAD = 37  # per SCTP packet on the wire: its DTLS 1.2 AES-GCM record
TICK = 0.01  # pacing granularity, seconds
WATCH_INTERVAL = 0.1  # pings interleaved with a flood, to see a queue build up
RTT_RISE_MS = 40.0  # a flood step whose RTT rises this much (or by half) above the quiet RTT fills a queue
LAGGING = 0.8  # a step whose received rate falls below this share of the offered rate has filled the link
CLEAR_SHARE = 0.85  # a ramp step offered at most this share of the throughput found left the link room to spare
KEPT_UP = 0.9  # a step whose RTT rose but which delivered this share of its rate did not fill the link: the machine
               # (an event loop held up on a busy computer), not a queue on the link, delayed the pings
BACKLOG_SECONDS = 0.05  # most DATA a sender lets SCTP queue locally: beyond that the link, not the pacer, is full
BURST_SECONDS = 0.1  # most unspent sending credit a pacer keeps: after a stall it sends no bigger burst than this
SILENCE_SECONDS = 6.0  # nothing from the client this long (it sends a receipt every 0.2 s): the path is lost
SATURATED_HOLD = 0.5  # seconds a step that filled the link keeps it full, to read the rate the link delivers
RECEIPT_WAIT = 2.0  # at most this long for the receipts covering a downstream step (a lost one is resent in order)
CLOCK_SLACK = 0.02  # seconds a receipt's time may seem to precede the probes it proves (timer granularity)
LOSS_SHARE = 0.65  # the loss phase offers this share of each direction's throughput: room for SACKs and receipts
LOSS_SIZE = wire.PING_SIZE  # bytes per loss-phase DATA: the smallest probe, the most samples a link's rate allows
LOSS_MAX_PPS = 500  # loss-phase probes a second, per direction, at most: samples enough, and a light load on a server
LOSS_SAMPLES = 2400  # the loss phase ends once this many probes were sent and arrived, both ways (0.6 point at 10 %)

Notify = Callable[[str, str, dict[str, Any]], Awaitable[None]]


@dataclass(frozen=True)
class LinkTestPlan:
    """What to test and for how long (signaling builds it from the configuration)."""

    paths: tuple[str, ...] = ("udp",)
    connect_timeout: float = 8.0
    ping_seconds: float = 1.5
    ping_interval: float = 0.02
    loss_seconds: float = 6.0  # at most: it ends sooner once it has LOSS_SAMPLES
    step_seconds: float = 0.4
    start_kbps: float = 100.0
    max_kbps: float = 3000.0
    ramp_seconds: float = 8.0  # at most, per direction
    ramp_factor: float = 3.0  # about: the ladder's steps are even, from start_kbps to max_kbps (``ladder``)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LinkTestPlan:
        unknown = [p for p in data.get("paths", ()) if p not in PATHS]
        if unknown or not data.get("paths"):
            raise MediaError("invalid-payload", f"unknown or no link-test paths: {unknown}")
        return cls(**{**data, "paths": tuple(data["paths"])})

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "paths": list(self.paths)}

    def ladder(self) -> list[float]:
        """The ramp's rates: geometric from ``start_kbps`` to exactly ``max_kbps``, each about ``ramp_factor`` times
        the one before (100, 311, 965, 3000 kbit/s). Ending on the ceiling spares a last step barely above the one
        before it, which a fast link's random loss can leave unsaturated and so costs one more step."""
        span = self.max_kbps / self.start_kbps
        if span <= 1:
            return [self.max_kbps]
        count = max(round(math.log(span) / math.log(self.ramp_factor)), 1)
        return [float(round(self.start_kbps * span ** (i / count))) for i in range(count + 1)]

    @property
    def expected_seconds(self) -> float:
        return 1.0 + self.ping_seconds + 2 * self.ramp_seconds * 0.7 + self.loss_seconds + 0.5


@dataclass
class _Path:
    name: str
    pc: RTCPeerConnection
    control: RTCDataChannel
    probe: RTCDataChannel
    opened: asyncio.Event = field(default_factory=asyncio.Event)
    answered_at: float | None = None
    open_at: float | None = None


@dataclass
class _Step:
    offered_kbps: float
    received_kbps: float
    """Over the step's whole window."""
    sustained_kbps: float | None
    """What the link kept up once a burst allowance was spent (``LinkTestPeer._sustained``)."""
    rtt_ms: float | None

    @property
    def kept_kbps(self) -> float:
        return self.sustained_kbps if self.sustained_kbps is not None else self.received_kbps


class LinkTestPeer:
    """One test. ``offers()``, then ``answer()`` for each path; it runs by itself and reports through ``notify``:
    ``linktest-progress`` {phase, progress} and, once, ``linktest-measured`` (see ``_report``)."""

    def __init__(self, test_id: str, configuration: RTCConfiguration, plan: LinkTestPlan, notify: Notify) -> None:
        self.test_id = test_id
        self.plan = plan
        self._configuration = configuration
        self._notify = notify
        self._paths: dict[str, _Path] = {}
        self._book = wire.NonceBook()
        self._pongs: dict[int, float] = {}  # seq → RTT ms
        self._up_arrivals: list[tuple[float, int]] = []  # (server time, UDP payload bytes) of every upstream packet
        self._up_rates: dict[int, float] = {}  # kbit/s the client said it sends at → when its first such DATA came
        self._up_seqs: list[tuple[float, int]] = []  # (server time, the client's DATA sequence number)
        self._loss_tag: int | None = None  # the rate tag of the client's loss-phase DATA
        self._loss_up: list[int] = []  # the client's loss-phase DATA sequence numbers that arrived
        self._loss_sent = 0  # loss-phase probes sent downstream
        self._loss_covered = 0.0  # server time before which every downstream loss probe's receipt is in
        self._windows: dict[str, list[tuple[float, float, float]]] = {}  # direction → (start, end, kbit/s) per step
        self._receipts: list[tuple[float, float, int]] = []  # (arrival, client's time, down DATA bytes proven)
        self._clock_offset: float | None = None  # server time − client time, least of all receipts (the promptest)
        self._chosen: _Path | None = None
        self._phase = "connect"
        self._phase_started = 0.0
        self._phase_seconds: dict[str, float] = {}  # how long each phase took: where a test's time went
        self._measured: dict[str, Any] = {}
        self._task: asyncio.Task[None] | None = None
        self._done = asyncio.Event()
        self._stop_reason: str | None = None
        self._forged: str | None = None
        self._rate = 0.0  # kbit/s the downstream pacer sends at
        self._size: int | None = None  # bytes per downstream DATA (None: ``data_size`` of the rate)
        self._heard_at = 0.0  # when anything last arrived from the client on the measured path
        self.finished = False

    # -- set-up -----------------------------------------------------------------------------------------

    async def offers(self) -> list[dict[str, str]]:
        """One offer per path of the plan (data channels only)."""
        out = []
        for name in self.plan.paths:
            pc = RTCPeerConnection(self._configuration)
            control = pc.createDataChannel("control", negotiated=True, id=wire.CONTROL_ID)
            probe = pc.createDataChannel("probe", negotiated=True, id=wire.PROBE_ID, ordered=False, maxRetransmits=0)
            hooks.pace_sctp_ourselves(pc.sctp)  # the ramp's pacing, not SCTP's loss-halved window, sets the rate
            path = _Path(name, pc, control, probe)
            pc.sctp.on_packet = lambda size, path=path: self._on_sctp_packet(path, size)
            self._paths[name] = path
            self._wire(path)
            await pc.setLocalDescription(await pc.createOffer())
            out.append({"path": name, "sdp": pc.localDescription.sdp})
        self._task = asyncio.ensure_future(self._run())
        return out

    async def answer(self, path_name: str, sdp: str) -> None:
        path = self._paths.get(path_name)
        if path is None:
            raise MediaError("invalid-payload", f"this test has no path {path_name!r}")
        if path.answered_at is not None:
            raise MediaError("negotiation-pending", f"path {path_name} is already answered")
        try:
            await path.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))
        except Exception as exc:  # aiortc raises ValueError, InvalidStateError... on a bad SDP
            raise MediaError("invalid-sdp", f"the answer could not be applied: {exc}") from None
        path.answered_at = time.monotonic()

    def stop(self, reason: str) -> None:
        """End the test now (the client went away or cancelled): what was measured is reported as partial."""
        if self._stop_reason is None:
            self._stop_reason = reason
        self._done.set()

    async def close(self) -> None:
        """Stop (a partial report if it was still running) and close every connection."""
        self.stop("closed")
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
        for path in self._paths.values():
            await path.pc.close()

    def _wire(self, path: _Path) -> None:
        loop = asyncio.get_running_loop()

        @path.control.on("open")
        def on_open() -> None:
            path.open_at = time.monotonic()
            path.opened.set()

        @path.control.on("message")
        def on_control(message: Any) -> None:
            if path is self._chosen and isinstance(message, str):
                self._heard_at = loop.time()
                self._on_control(message, self._heard_at)

        @path.probe.on("message")
        def on_probe(message: Any) -> None:
            if path is self._chosen and isinstance(message, bytes):
                self._heard_at = loop.time()
                self._on_probe(message, self._heard_at)

        @path.pc.on("connectionstatechange")
        def on_state() -> None:
            if path is self._chosen and path.pc.connectionState in ("failed", "closed"):
                self.stop("connection-lost")

    def _on_control(self, text: str, now: float) -> None:
        try:
            message = json.loads(text)
        except ValueError:
            return
        if not isinstance(message, dict) or message.get("type") != "receipt":
            return
        try:
            seqs = self._book.verify(message)
        except wire.ForgedReceipt as exc:
            self._forged = str(exc)
            self.stop("forged-receipt")
            return
        client_time = message["t"] / 1000
        offset = now - client_time
        if self._clock_offset is None or offset < self._clock_offset:
            self._clock_offset = offset
        latest = max((self._book.sent[s].sent_at for s in seqs), default=None)
        if latest is not None and client_time + self._clock_offset < latest - CLOCK_SLACK:
            self._forged = "the receipt proves a probe before it was sent"
            self.stop("forged-receipt")
            return
        # the pings interleaved with the flood share the link with it: they count towards what it carried
        data = sum(self._book.sent[s].size + OVERHEAD_BYTES for s in seqs
                   if self._book.sent[s].phase in ("down", "watch"))
        self._receipts.append((now, client_time, data))

    def _down_received(self) -> list[tuple[float, int]]:
        """Each receipt's proven downstream bytes at the server time it was written (its client time, shifted by
        the promptest receipt's offset): a receipt delayed behind a lost one, which SCTP resends in order, still
        counts for the interval it covers."""
        offset = self._clock_offset or 0.0
        return [(client_time + offset, size) for _, client_time, size in self._receipts]

    async def _await_receipts(self, until: float) -> None:
        """Wait (at most ``RECEIPT_WAIT``) for a receipt written at or after server time ``until``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + RECEIPT_WAIT
        while loop.time() < deadline:
            if self._receipts and self._receipts[-1][1] + (self._clock_offset or 0.0) >= until:
                return
            await self._sleep(0.02)

    def _on_sctp_packet(self, path: _Path, size: int) -> None:
        """Upstream, the link carries the client's SACKs, receipts and FORWARD TSNs as well as its DATA and PONGs:
        counting them all measures what the link carried (a full link drops and resends them too: DATA alone read
        97 for 128 kbit/s at 10 % loss)."""
        if path is self._chosen and self._phase == "up":
            self._up_arrivals.append((asyncio.get_running_loop().time(), size + DTLS_OVERHEAD))

    def _on_probe(self, data: bytes, now: float) -> None:
        probe = wire.unpack(data)
        if probe is None:
            return
        kind, seq, nonce, _ = probe
        if kind == wire.PONG:
            sent = self._book.sent.get(seq)
            if sent is not None and sent.nonce == nonce and seq not in self._pongs:
                self._pongs[seq] = (now - sent.sent_at) * 1000
        elif kind == wire.DATA and self._phase == "up":
            self._up_rates.setdefault(nonce, now)  # upstream DATA carries its sender's rate in the nonce field
            self._up_seqs.append((now, seq))
        elif kind == wire.DATA and self._phase == "loss" and nonce == self._loss_tag:
            self._loss_up.append(seq)

    # -- the test -----------------------------------------------------------------------------------------

    async def _run(self) -> None:
        watchdog: asyncio.Task[None] | None = None
        try:
            await self._connect()
            if self._chosen is not None:
                watchdog = asyncio.ensure_future(self._watch_silence())
                await self._ping_phase()
                await self._ramp("down")
                await self._ramp("up")
                await self._loss_phase()
                self._measured.update(self._ping_figures(with_data=True))
                self._send_control({"type": "end"})
                self._enter("done")
        except _Stopped:
            pass
        except Exception:
            logger.exception("link test %s failed", self.test_id)
            self._stop_reason = self._stop_reason or "internal"
        if watchdog is not None:
            watchdog.cancel()
        self.finished = True
        await self._report()
        await asyncio.sleep(0.5)  # let the "end" reach the client before its connection closes
        for path in self._paths.values():
            await path.pc.close()

    async def _watch_silence(self) -> None:
        """A path can die without its connection state changing for half a minute (ICE consent): stop sooner."""
        loop = asyncio.get_running_loop()
        self._heard_at = loop.time()
        while not self._done.is_set():
            await asyncio.sleep(0.5)
            if loop.time() - self._heard_at > SILENCE_SECONDS:
                self.stop("connection-lost")

    def _check(self) -> None:
        if self._done.is_set():
            raise _Stopped

    async def _sleep(self, seconds: float) -> None:
        """Sleep, unless the test is stopped meanwhile."""
        try:
            await asyncio.wait_for(self._done.wait(), max(seconds, 0.0))
        except TimeoutError:
            return
        raise _Stopped

    async def _progress(self, phase: str, fraction: float) -> None:
        await self._notify(self.test_id, "linktest-progress", {"phase": phase, "progress": round(fraction, 3)})

    def _enter(self, phase: str) -> None:
        now = asyncio.get_running_loop().time()
        if self._phase_started:
            self._phase_seconds[self._phase] = round(now - self._phase_started, 2)
        self._phase, self._phase_started = phase, now

    async def _connect(self) -> None:
        self._enter("connect")
        await self._progress("connect", 0.0)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.plan.connect_timeout
        while loop.time() < deadline and not all(self._settled(p) for p in self._paths.values()):
            await self._sleep(0.05)
        paths = []
        for path in self._paths.values():
            entry: dict[str, Any] = {"path": path.name, "ok": path.opened.is_set()}
            if path.opened.is_set() and path.open_at is not None and path.answered_at is not None:
                entry["connectMs"] = round((path.open_at - path.answered_at) * 1000, 1)
                dtls = path.pc.sctp.transport if path.pc.sctp is not None else None
                if dtls is not None:
                    entry["candidate"] = hooks.nominated_pair(dtls)
                    remote = hooks.nominated_remote_address(dtls)
                    entry["remoteAddress"] = None if remote is None else f"{remote[0]}:{remote[1]}"
            elif path.answered_at is None:
                entry["error"] = "no-answer"
            paths.append(entry)
            if self._chosen is None and entry["ok"]:
                self._chosen = path
        self._measured["paths"] = paths
        for path in self._paths.values():
            if path is not self._chosen:
                await path.pc.close()
        self._check()
        if self._chosen is not None:
            self._measured["measuredOn"] = self._chosen.name

    @staticmethod
    def _settled(path: _Path) -> bool:
        return path.opened.is_set() or path.pc.connectionState in ("failed", "closed")

    def _send_probe(self, kind: int, size: int, phase: str) -> bool:
        assert self._chosen is not None
        loop = asyncio.get_running_loop()
        seq, nonce = self._book.issue(size, loop.time(), phase)
        self._loss_sent += phase == "loss"
        try:
            self._chosen.probe.send(wire.pack(kind, seq, nonce, loop.time(), size))
        except Exception:  # the channel closed under us: the state handler stops the test
            return False
        return True

    def _send_control(self, message: dict[str, Any]) -> None:
        if self._chosen is not None and self._chosen.control.readyState == "open":
            self._chosen.control.send(json.dumps(message))

    async def _ping_phase(self) -> None:
        self._enter("ping")
        loop = asyncio.get_running_loop()
        start, interval = loop.time(), self.plan.ping_interval
        n = 0
        next_progress = start
        while (at := start + n * interval) < start + self.plan.ping_seconds:
            await self._sleep(at - loop.time())
            self._send_probe(wire.PING, wire.PING_SIZE, "ping")
            n += 1
            if loop.time() >= next_progress:
                next_progress += 0.5
                await self._progress("ping", (loop.time() - start) / self.plan.ping_seconds)
        # the last PONGs, and the receipt covering the last PINGs
        rtts = list(self._pongs.values())
        await self._sleep(max(0.3, 2 * (statistics.median(rtts) / 1000 if rtts else 0.5)) + wire.RECEIPT_INTERVAL)
        self._measured.update(self._ping_figures())

    def _ping_figures(self, settled_only: bool = False, with_data: bool = False) -> dict[str, Any]:
        """RTT, jitter and loss of the ping phase. ``settled_only`` (a test stopped mid-phase): only the pings whose
        receipt and PONG had time to arrive before the last receipt did, so the cut is not counted as loss.
        ``with_data`` (the test done): loss also counts the loss phase's probes (``_loss_data``) and the DATA of the
        ramp steps that left the link room to spare (``_clear_data``)."""
        pings = [s for s, p in self._book.sent.items() if p.phase == "ping"]
        if settled_only:
            rtts = sorted(self._pongs.values())
            margin = (rtts[len(rtts) // 2] / 1000 if rtts else 0.5) + wire.RECEIPT_INTERVAL
            last = self._receipts[-1][0] if self._receipts else 0.0
            pings = [s for s in pings if self._book.sent[s].sent_at < last - margin]
        received = [s for s in pings if s in self._book.received]
        echoed = [s for s in received if s in self._pongs]
        rtts = [self._pongs[s] for s in sorted(self._pongs) if self._book.sent[s].phase == "ping"]
        figures: dict[str, Any] = {"pings": len(pings)}
        if rtts:
            figures["rttMs"] = round(statistics.median(rtts), 1)
            diffs = [abs(b - a) for a, b in zip(rtts, rtts[1:])]
            figures["jitterMs"] = round(statistics.fmean(diffs), 1) if diffs else 0.0
        down_sent, down_got, up_sent, up_got = len(pings), len(received), len(received), len(echoed)
        if with_data:
            for extra in (self._clear_data(), self._loss_data()):
                down_sent, down_got = down_sent + extra[0], down_got + extra[1]
                up_sent, up_got = up_sent + extra[2], up_got + extra[3]
            figures["lossSamples"] = down_sent + up_sent
        if down_sent:
            figures["lossDown"] = round(1 - down_got / down_sent, 4)
        if up_sent:
            figures["lossUp"] = round(1 - up_got / up_sent, 4)
        if down_sent:
            figures["loss"] = round((down_sent - down_got + up_sent - up_got) / (down_sent + up_sent), 4)
        return figures

    def _clear_data(self) -> tuple[int, int, int, int]:
        """(sent, received) downstream, then upstream, of the DATA in ramp steps offered at most ``CLEAR_SHARE`` of
        the throughput found: no queue overflowed then, so every probe lost was lost at random. Downstream the
        receipts prove which arrived; upstream the gaps in the client's sequence numbers show which did not."""
        counts = [0, 0, 0, 0]
        for direction, offset in (("down", 0), ("up", 2)):
            found = (self._measured.get(direction) or {}).get("kbps")
            windows = [(start, end) for start, end, rate in self._windows.get(direction, [])
                       if found and rate <= CLEAR_SHARE * found]
            for start, end in windows:
                if direction == "down":
                    sent = [seq for seq, p in self._book.sent.items() if p.phase == "down" and start <= p.sent_at < end]
                    counts[offset] += len(sent)
                    counts[offset + 1] += sum(seq in self._book.received for seq in sent)
                else:
                    seqs = {seq for at, seq in self._up_seqs if start <= at < end}
                    if seqs:
                        counts[offset] += max(seqs) - min(seqs) + 1
                        counts[offset + 1] += len(seqs)
        return counts[0], counts[1], counts[2], counts[3]

    @staticmethod
    def _window_kbps(arrivals: list[tuple[float, int]], start: float, end: float, spread: bool) -> float:
        """Received rate over [start, end) of server time. ``spread``: each entry is a receipt whose bytes arrived
        since the previous entry, so they are spread over that interval (a window sees its share, not 0 or all)."""
        total = 0.0
        previous: float | None = None
        for at, size in arrivals:
            if not spread:
                if start <= at < end:
                    total += size
            elif previous is not None and size:
                overlap = min(at, end) - max(previous, start)
                if overlap > 0:
                    total += size * overlap / (at - previous)
            previous = at
        return total * 8 / 1000 / (end - start)

    @classmethod
    def _sustained(cls, arrivals: list[tuple[float, int]], start: float, end: float, spread: bool) -> float | None:
        """The rate the path kept up within [start, end), leaving out its start, where a link's token bucket can let
        a burst through. Upstream, from the server's own arrival times: bytes over the time between the first and
        the last packet of the window's last two thirds (a stall after the last packet does not count).
        Downstream, where receipts are the finest timing: the median over receipt intervals but the first."""
        if spread:
            width = wire.RECEIPT_INTERVAL
            count = int((end - start) / width)
            slices = [cls._window_kbps(arrivals, start + i * width, start + (i + 1) * width, True) for i in range(count)]
            return statistics.median(slices[1:]) if count > 1 else None
        inside = [(at, size) for at, size in arrivals if start <= at < end]
        kept = inside[len(inside) // 3:]
        if len(kept) < 4 or kept[-1][0] <= kept[0][0]:
            return None
        return sum(size for _, size in kept[1:]) * 8 / 1000 / (kept[-1][0] - kept[0][0])

    def _rtt_between(self, start: float, end: float) -> float | None:
        rtts = [rtt for seq, rtt in self._pongs.items()
                if self._book.sent[seq].phase == "watch" and start <= self._book.sent[seq].sent_at < end]
        return statistics.median(rtts) if rtts else None

    async def _ramp(self, direction: str) -> None:
        """Raise the offered rate step by step until the received rate stops following it or the RTT rises. A rising
        RTT means a queue stands at the link's bottleneck: the step then holds its rate ``SATURATED_HOLD`` longer,
        and what arrives meanwhile, leaving a full queue, comes at the link's rate, ramp-up and burst excluded."""
        self._enter(direction)
        loop = asyncio.get_running_loop()
        plan = self.plan
        base_rtt = self._measured.get("rttMs") or 50.0
        # a rate change shows at the server one RTT later (the instruction goes down and DATA comes up, or DATA goes
        # down and its receipt is written)
        lag = base_rtt / 1000 + 0.05
        down = direction == "down"
        rise = max(RTT_RISE_MS, base_rtt / 2)
        # what arrives of an offered rate when the link is not full: random loss takes its share
        delivered = 1.0 - min(float(self._measured.get("lossDown" if down else "lossUp") or 0.0), 0.5)
        ladder = plan.ladder()
        steps: list[_Step] = []
        saturated = False
        pacer = asyncio.ensure_future(self._pace(direction))
        ramp_start = loop.time()
        first_t0 = 0.0
        try:
            await self._settle(base_rtt, rise)
            for rate in ladder:
                self._rate = rate
                t0 = loop.time()
                if direction == "up":
                    # the step starts with the first DATA sent at its rate: the instruction may queue behind old
                    # traffic, or wait for SCTP to resend it if it was lost
                    self._send_control({"type": "send", "kbps": rate})
                    while wire.rate_tag(rate) not in self._up_rates and loop.time() < t0 + RECEIPT_WAIT + 2 * lag:
                        await self._sleep(0.02)
                    t0 = self._up_rates.get(wire.rate_tag(rate), t0 + lag) - lag
                first_t0 = first_t0 or t0
                queueing = await self._watch(first_t0, t0 + plan.step_seconds + lag, base_rtt + rise)
                end = loop.time()
                full_from = end
                if queueing:
                    await self._sleep(SATURATED_HOLD)
                    end = loop.time()
                # downstream, the step's probes are proven by receipts written up to one RTT after it
                shift = lag if down else 0.0
                if down:
                    await self._await_receipts(end + shift)
                arrivals = self._down_received() if down else self._up_arrivals
                received = self._window_kbps(arrivals, t0 + lag, end + shift, down)
                if queueing:
                    sustained: float | None = self._window_kbps(arrivals, full_from, end + shift, down)
                    queueing = sustained < KEPT_UP * rate * delivered
                    if not queueing:  # not full after all: the hold was one more stretch of this step
                        sustained = self._sustained(arrivals, t0 + lag, end + shift, down)
                        first_t0 = loop.time()  # the delayed pings are no evidence for the next step
                else:
                    sustained = self._sustained(arrivals, t0 + lag, end + shift, down)
                rtt = self._rtt_between(t0, full_from - lag)
                # the step's DATA: sent over [t0, end) downstream, arrived over [t0 + lag, end) upstream
                self._windows.setdefault(direction, []).append((t0 + (0.0 if down else lag), end, rate))
                steps.append(_Step(rate, round(received, 1), None if sustained is None else round(sustained, 1),
                                   None if rtt is None else round(rtt, 1)))
                await self._progress(direction, min((loop.time() - ramp_start) / plan.ramp_seconds, 1.0))
                # clearly short of the offered rate, over the whole step and over its later part: the link is full
                # (the first step only starts the flow, so a shortfall there is no evidence yet; a few random losses
                # among a short step's probes can make one measure alone fall short)
                lagging = (len(steps) > 1
                           and max(steps[-1].kept_kbps, steps[-1].received_kbps) < LAGGING * rate * delivered)
                if lagging and not queueing and not down:
                    # full, though no queue showed yet: the link's token bucket let a burst through at the step's
                    # start (the server's own arrival times read +22 % at 128 kbit/s); holding the rate leaves a
                    # full queue, at the link's rate (downstream, the receipts' median slice already leaves it out)
                    held_from = loop.time()
                    await self._sleep(SATURATED_HOLD)
                    steps[-1].sustained_kbps = round(self._window_kbps(self._up_arrivals, held_from, loop.time(),
                                                                       False), 1)
                if queueing or lagging:
                    saturated = True
                    break
                # ramp_seconds of stepping, plus each step's round trips (a far link's steps must not be cut short)
                allowed = plan.ramp_seconds + (len(steps) + 1) * 2 * lag
                if loop.time() - ramp_start + plan.step_seconds + 2 * lag > allowed:
                    break
        finally:
            self._rate = 0.0
            if direction == "up":
                self._send_control({"type": "send", "kbps": 0})
            pacer.cancel()
            self._measured[direction] = {
                "kbps": throughput_kbps(steps, saturated),
                "saturated": saturated,
                "steps": [asdict(s) for s in steps],
            }

    async def _watch(self, since: float, until: float, limit_ms: float) -> bool:
        """Wait until ``until``; True as soon as the last two pings answered (sent since ``since``) both came back
        slower than ``limit_ms``: a queue is building on the path."""
        loop = asyncio.get_running_loop()
        while loop.time() < until:
            await self._sleep(min(0.05, until - loop.time()))
            recent = [rtt for seq, rtt in sorted(self._pongs.items())
                      if self._book.sent[seq].phase == "watch" and self._book.sent[seq].sent_at >= since][-2:]
            if len(recent) == 2 and min(recent) > limit_ms:
                return True
        return False

    async def _settle(self, base_rtt: float, rise: float, longest: float = 3.0) -> None:
        """Let a queue the previous phase filled drain: until a ping comes back near the quiet RTT (or ``longest``)."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        await self._sleep(WATCH_INTERVAL * 2)
        while loop.time() < start + longest:
            recent = [rtt for seq, rtt in sorted(self._pongs.items())
                      if self._book.sent[seq].phase == "watch" and self._book.sent[seq].sent_at >= start]
            if recent and recent[-1] < base_rtt + rise / 2:
                return
            await self._sleep(0.05)

    async def _loss_phase(self) -> None:
        """Loss, from the smallest probes both ways at once at ``LOSS_SHARE`` of each direction's throughput: a
        proportion's standard error is √(p(1−p)/n), and the pings' few hundred samples leave it ±1 point at 10 %."""
        self._enter("loss")
        loop = asyncio.get_running_loop()
        base_rtt = self._measured.get("rttMs") or 50.0
        lag = base_rtt / 1000 + 0.05
        pacer = asyncio.ensure_future(self._pace("down"))
        try:
            await self._settle(base_rtt, max(RTT_RISE_MS, base_rtt / 2))  # the upstream ramp's queue drains first
            up = loss_kbps((self._measured.get("up") or {}).get("kbps"), self.plan.start_kbps)
            while wire.rate_tag(up) in self._up_rates:  # its tag tells its DATA from the ramp's still on the way
                up += 1
            self._loss_tag = wire.rate_tag(up)
            self._send_control({"type": "send", "kbps": up, "size": LOSS_SIZE})
            self._size = LOSS_SIZE
            self._rate = loss_kbps((self._measured.get("down") or {}).get("kbps"), self.plan.start_kbps)
            start, next_progress = loop.time(), 0.0
            while (elapsed := loop.time() - start) < self.plan.loss_seconds:
                samples = self._loss_sent + len(self._loss_up)
                if samples >= LOSS_SAMPLES:
                    break
                if elapsed >= next_progress:
                    next_progress += 0.5
                    await self._progress("loss", max(elapsed / self.plan.loss_seconds, samples / LOSS_SAMPLES))
                await self._sleep(min(0.1, self.plan.loss_seconds - elapsed))
        finally:
            self._rate, self._size = 0.0, None
            self._send_control({"type": "send", "kbps": 0})
            pacer.cancel()
        await self._await_receipts(loop.time() + lag)
        await self._sleep(lag)  # the client's last DATA
        # a receipt held back past the wait (one lost, SCTP not yet resending it) must not turn probes into losses
        self._loss_covered = (self._down_received()[-1][0] if self._receipts else 0.0) - lag

    def _loss_data(self) -> tuple[int, int, int, int]:
        """(sent, received) downstream, then upstream, of the loss phase's probes: downstream those the receipts
        had time to cover, upstream the span of the client's sequence numbers that arrived."""
        sent = [seq for seq, p in self._book.sent.items() if p.phase == "loss" and p.sent_at < self._loss_covered]
        seqs = set(self._loss_up)
        up_sent = max(seqs) - min(seqs) + 1 if seqs else 0
        return len(sent), sum(seq in self._book.received for seq in sent), up_sent, len(seqs)

    async def _pace(self, direction: str) -> None:
        """Interleaved pings always; DATA at ``self._rate`` for the downstream ramp (the client paces upstream)."""
        loop = asyncio.get_running_loop()
        sent_bytes, credit_at, rate = 0.0, loop.time(), 0.0
        next_watch = loop.time()
        assert self._chosen is not None
        probe = self._chosen.probe
        while True:
            now = loop.time()
            if now >= next_watch:
                self._send_probe(wire.PING, wire.PING_SIZE, "watch")
                next_watch = now + WATCH_INTERVAL
            if self._rate != rate:  # a new step: its own budget from now
                rate, credit_at, sent_bytes = self._rate, now, 0.0
            if direction == "down" and rate > 0:
                size = self._size or data_size(rate)
                budget = (now - credit_at) * rate * 125 - sent_bytes
                burst = burst_bytes(rate)
                if budget > burst:  # held back (a stalled event loop, SCTP's buffer): no catching up in one burst
                    sent_bytes += budget - burst
                    budget = burst
                backlog_limit = max(rate * 125 * BACKLOG_SECONDS, 4 * wire.DATA_SIZE)
                while budget >= size + OVERHEAD_BYTES and probe.bufferedAmount < backlog_limit:
                    if not self._send_probe(wire.DATA, size, self._phase):
                        return
                    sent_bytes += size + OVERHEAD_BYTES
                    budget -= size + OVERHEAD_BYTES
            await asyncio.sleep(TICK)

    async def _report(self) -> None:
        measured = dict(self._measured)
        if self._chosen is not None and "rttMs" not in measured and self._phase == "ping":
            measured.update(self._ping_figures(settled_only=True))
        complete = self._stop_reason is None
        measured.update({
            "status": "complete" if complete else "partial",
            "stoppedIn": None if complete else self._phase,
            "stopReason": self._stop_reason,
            "forged": self._forged,
            "phaseSeconds": dict(self._phase_seconds),
        })
        if "paths" not in measured:
            measured["paths"] = [{"path": p, "ok": None, "error": "not-tried"} for p in self._paths]
        await self._notify(self.test_id, "linktest-measured", measured)


class _Stopped(Exception):
    """The test was stopped: unwind to the report."""


def throughput_kbps(steps: list[_Step], saturated: bool) -> float | None:
    """What a ramp found. Saturated: what the link sustained in the step that filled it (both ends pace their own
    DATA, so SCTP no longer stalls there; the step before, offered less, reads more only when a link's token bucket
    let a burst through as the load first exceeded its rate: +22 % at 128 kbit/s). A whole window would overstate it
    for the same reason. Not saturated: the best step, a lower bound (the ramp reached its ceiling)."""
    if not steps:
        return None
    if saturated:
        return steps[-1].kept_kbps
    return max(s.received_kbps for s in steps)


def loss_kbps(throughput: float | None, floor: float) -> float:
    """The loss phase's rate for a direction: ``LOSS_SHARE`` of its throughput (of ``floor`` when the ramp found
    none), in whole kbit/s (its rate tag), at most ``LOSS_MAX_PPS`` of the smallest probes."""
    most = LOSS_MAX_PPS * (LOSS_SIZE + OVERHEAD_BYTES) * 8 / 1000
    return float(max(round(min(LOSS_SHARE * (throughput or floor), most)), 1))


def burst_bytes(kbps: float) -> float:
    """The most a pacer sends at once at ``kbps``: ``BURST_SECONDS`` of it, at least two DATA probes."""
    return max(kbps * 125 * BURST_SECONDS, 2 * (data_size(kbps) + OVERHEAD_BYTES))


def data_size(kbps: float) -> int:
    """DATA message size for a rate: about 40 messages a second at low rates, full-size probes above 350 kbit/s."""
    return int(min(max(kbps * 125 / 40 - OVERHEAD_BYTES, 250), wire.DATA_SIZE))
