"""The server's link-test peer against an aiortc client through the link emulator: what it reports is what the
emulator imposed (RTT ±15 ms or ±10 %, loss ±1.5 points, throughput ±20 %), and it cannot be fooled or left hanging.

Short phases keep CI time modest; ``bench/linktest.py`` runs the full grid at the default durations.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import pytest
from aiortc import RTCBundlePolicy, RTCConfiguration

from client.link_emulator import Impairment, LinkEmulator
from client.linktest import LinkTestResponder
from media.linktest import LinkTestPeer, LinkTestPlan

pytestmark = pytest.mark.solo

SHORT = LinkTestPlan(ping_seconds=1.5, loss_seconds=1.0, connect_timeout=5)


class Run:
    """One test: the server peer, a client responder behind an emulated link, and what the peer reported."""

    def __init__(self, plan: LinkTestPlan, link: LinkEmulator, responder: LinkTestResponder | None = None) -> None:
        self.link = link
        self.measured: dict[str, Any] = {}
        self.progress: list[dict[str, Any]] = []
        self.done = asyncio.Event()
        self.peer = LinkTestPeer("t" * 32, RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE),
                                 plan, self._notify)
        self.responder = responder or LinkTestResponder(emulator=link)

    async def _notify(self, test_id: str, event: str, payload: dict[str, Any]) -> None:
        if event == "linktest-progress":
            self.progress.append(payload)
        elif event == "linktest-measured":
            self.measured = payload
            self.done.set()

    async def start(self) -> None:
        [offer] = await self.peer.offers()
        await self.peer.answer("udp", await self.responder.answer(offer["sdp"]))

    async def result(self, timeout: float = 60) -> dict[str, Any]:
        await asyncio.wait_for(self.done.wait(), timeout)
        return self.measured

    async def close(self) -> None:
        await self.peer.close()
        await self.responder.close()
        self.link.close()


@pytest.fixture
async def runs() -> AsyncIterator[list[Run]]:
    created: list[Run] = []
    yield created
    for run in created:
        await run.close()


async def measure(runs: list[Run], up: Impairment, down: Impairment, plan: LinkTestPlan = SHORT) -> dict[str, Any]:
    run = Run(plan, LinkEmulator(up=up, down=down, seed=11))
    runs.append(run)
    await run.start()
    return await run.result()


def within(measured: float, expected: float, absolute: float, relative: float) -> bool:
    return abs(measured - expected) <= max(absolute, relative * expected)


async def test_added_delay_is_measured_as_rtt(runs: list[Run]) -> None:
    measured = await measure(runs, Impairment(delay_ms=50), Impairment(delay_ms=50))
    assert measured["status"] == "complete" and measured["stopReason"] is None
    assert within(measured["rttMs"], 100 + 1, 15, 0.10), measured["rttMs"]  # + about 1 ms of loopback
    assert measured["jitterMs"] < 30 and measured["loss"] == 0  # (≈ 1 ms on an idle machine)
    assert measured["paths"] == [{"path": "udp", "ok": True, "connectMs": measured["paths"][0]["connectMs"],
                                  "candidate": {"local": "host", "remote": "prflx", "protocol": "udp"},
                                  "remoteAddress": measured["paths"][0]["remoteAddress"]}]
    # every phase reported its progress, in order
    phases = [p["phase"] for p in runs[0].progress]
    assert phases[0] == "connect" and {"ping", "down", "up", "loss"} <= set(phases)
    assert phases.index("ping") < phases.index("down") < phases.index("up") < phases.index("loss")
    assert all(0 <= p["progress"] <= 1 for p in runs[0].progress)
    # and says where the test's time went: the pings took their planned time, every phase some
    took = measured["phaseSeconds"]
    assert list(took) == ["connect", "ping", "down", "up", "loss"] and all(s > 0 for s in took.values()), took
    assert SHORT.ping_seconds <= took["ping"] < SHORT.ping_seconds + 1.5, took


def test_the_ramp_climbs_evenly_to_its_ceiling() -> None:
    # a last step barely above the one before would cost a far link a step's round trips for no news
    assert LinkTestPlan().ladder() == [100, 311, 965, 3000]
    assert LinkTestPlan(max_kbps=1000).ladder() == [100, 316, 1000]
    assert LinkTestPlan(max_kbps=100_000, ramp_factor=2).ladder()[-1] == 100_000
    assert LinkTestPlan(start_kbps=100, max_kbps=100).ladder() == [100]


async def test_random_loss_is_measured_each_way(runs: list[Run]) -> None:
    # the loss phase's small probes, both ways at once: thousands of samples (one standard error ≈ 0.4 point at 5 %)
    lossy = Impairment(loss=0.05, rate_kbps=512)
    measured = await measure(runs, lossy, lossy, replace(SHORT, loss_seconds=4, max_kbps=1000))
    assert measured["lossSamples"] >= 2000, measured["lossSamples"]
    assert within(measured["loss"], 0.05, 0.015, 0), measured["loss"]
    assert within(measured["lossDown"], 0.05, 0.025, 0) and within(measured["lossUp"], 0.05, 0.025, 0), measured


async def test_rate_limits_are_measured_both_ways(runs: list[Run]) -> None:
    measured = await measure(runs, Impairment(rate_kbps=512), Impairment(rate_kbps=512))
    down, up = measured["down"], measured["up"]
    assert down["saturated"] and up["saturated"]
    assert within(down["kbps"], 512, 0, 0.20) and within(up["kbps"], 512, 0, 0.20), (down, up)


async def test_an_asymmetric_far_link(runs: list[Run]) -> None:
    measured = await measure(runs, Impairment(delay_ms=50, rate_kbps=128), Impairment(delay_ms=50, rate_kbps=2000))
    assert within(measured["up"]["kbps"], 128, 0, 0.20), measured["up"]
    assert within(measured["down"]["kbps"], 2000, 0, 0.20), measured["down"]
    assert within(measured["rttMs"], 100, 15, 0.10)


async def test_a_lossy_far_link_is_measured_at_its_rate_not_at_a_loss_halved_share(runs: list[Run]) -> None:
    # SCTP's own congestion control would settle near 1.2 MSS / (RTT √loss) ≈ 430 kbit/s here, and a receipt or an
    # instruction lost on the way would hold the next ones back: neither may show in the figures
    lossy = Impairment(delay_ms=50, loss=0.05, rate_kbps=1000)
    measured = await measure(runs, lossy, lossy, replace(SHORT, max_kbps=2000))
    assert measured["down"]["saturated"] and measured["up"]["saturated"]
    assert within(measured["down"]["kbps"], 1000, 0, 0.20), measured["down"]
    assert within(measured["up"]["kbps"], 1000, 0, 0.20), measured["up"]


async def test_an_unlimited_link_is_reported_as_at_least_the_ramp_ceiling(runs: list[Run]) -> None:
    measured = await measure(runs, Impairment(), Impairment(), replace(SHORT, max_kbps=1000))
    for direction in ("down", "up"):
        assert not measured[direction]["saturated"] and within(measured[direction]["kbps"], 1000, 0, 0.15)


class Forger(LinkTestResponder):
    """A client that claims, in every receipt, one probe more than it received."""

    def __init__(self, link: LinkEmulator) -> None:
        super().__init__(emulator=link)
        self.highest = -1

    def _on_probe(self, message: Any) -> None:
        super()._on_probe(message)
        if isinstance(message, bytes) and len(message) >= 5:
            self.highest = max(self.highest, int.from_bytes(message[1:5], "big"))

    async def _send_receipts(self) -> None:
        while self.control.readyState == "open":
            await asyncio.sleep(0.2)
            real = json.loads(self._receipts.take(asyncio.get_running_loop().time() * 1000))
            real["runs"].append([self.highest + 1, self.highest + 1])  # a probe not yet sent, let alone received
            self.control.send(json.dumps(real))


async def test_a_client_claiming_probes_it_never_received_is_caught(runs: list[Run]) -> None:
    link = LinkEmulator()
    run = Run(SHORT, link, Forger(link))
    runs.append(run)
    await run.start()
    measured = await run.result(timeout=20)
    assert measured["status"] == "partial" and measured["stopReason"] == "forged-receipt"
    assert measured["forged"] and measured["stoppedIn"] == "ping"


async def test_a_path_that_dies_mid_test_ends_it_with_a_partial_result(runs: list[Run]) -> None:
    link = LinkEmulator()
    run = Run(replace(SHORT, ping_seconds=3), link)
    runs.append(run)
    await run.start()
    while not any(p["phase"] == "ping" for p in run.progress):
        await asyncio.sleep(0.05)
    link.set(up=Impairment(loss=1.0), down=Impairment(loss=1.0))  # the site's line goes dead
    measured = await run.result(timeout=20)
    assert measured["status"] == "partial" and measured["stopReason"] == "connection-lost"
    assert measured["stoppedIn"] in ("ping", "down") and measured["paths"][0]["ok"]


async def test_a_stopped_test_reports_what_it_measured(runs: list[Run]) -> None:
    run = Run(SHORT, LinkEmulator())
    runs.append(run)
    await run.start()
    while not any(p["phase"] == "down" for p in run.progress):
        await asyncio.sleep(0.05)
    run.peer.stop("client-left")
    measured = await run.result(timeout=10)
    assert measured["status"] == "partial" and measured["stopReason"] == "client-left"
    assert measured["stoppedIn"] == "down" and measured["rttMs"] is not None and measured.get("up") is None
