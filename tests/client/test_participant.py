"""A headless participant through an emulated link: all its media crosses the relay, and the relay's faults hit it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from support import PatternVideoTrack, Server, ToneAudioTrack, wait_for

from client.link_emulator import Impairment, LinkEmulator
from client.participant import Participant


@pytest.fixture
async def cleanup() -> AsyncIterator[list[Any]]:
    created: list[Any] = []
    yield created
    await asyncio.gather(*(p.leave() for p in created if isinstance(p, Participant)), return_exceptions=True)
    for item in created:
        if isinstance(item, LinkEmulator):
            item.close()


async def test_all_media_crosses_the_emulator_and_a_cut_link_stops_it(server: Server, cleanup: list[Any]) -> None:
    link = LinkEmulator()
    a = Participant(server.url, "emulated", "A", tracks=[PatternVideoTrack(320, 240), ToneAudioTrack()], emulator=link)
    b = Participant(server.url, "emulated", "B", tracks=[PatternVideoTrack(320, 240), ToneAudioTrack()])
    cleanup += [link, a, b]
    about_a: list[dict[str, Any]] = []
    b.sio.on("link-quality", lambda s: about_a.append(s) if s["participantId"] == a.id else None)
    adaptation: dict[str, list[tuple[float, dict[str, Any]]]] = {"A": [], "B": []}
    for p in (a, b):
        p.sio.on("adaptation", lambda data, name=p.name: adaptation[name].append((time.monotonic(), data)))
    await a.join()
    await b.join()
    await wait_for(lambda: (v := a.video_from(b.id)) is not None and v.frames > 30
                   and (w := b.video_from(a.id)) is not None and w.frames > 30, timeout=20)

    # The server reached A only through the relay: A's candidate is the relay's mapping, learnt from the checks.
    await wait_for(lambda: bool(about_a), timeout=5)
    assert about_a[-1]["candidate"] == {"local": "host", "remote": "prflx", "protocol": "udp"}
    up, down = link.up.counters, link.down.counters
    assert up.delivered > 100 and down.delivered > 100
    # what the server says it received from A is what the relay delivered (media, RTCP, STUN: all of it)
    sample = about_a[-1]
    assert sample["sendKbps"] > 20 and sample["recvKbps"] > 20

    # 100 % loss both ways: nothing more from A reaches B, nothing from B reaches A
    link.set(up=Impairment(loss=1.0), down=Impairment(loss=1.0))
    await asyncio.sleep(0.5)  # frames already in flight or in a jitter buffer
    seen_by_b, seen_by_a = b.video_from(a.id), a.video_from(b.id)
    assert seen_by_b is not None and seen_by_a is not None
    frames_b, frames_a, delivered = seen_by_b.frames, seen_by_a.frames, (up.delivered, down.delivered)
    await asyncio.sleep(2.0)
    assert seen_by_b.frames == frames_b and seen_by_a.frames == frames_a
    assert (up.delivered, down.delivered) == delivered and up.lost > 50 and down.lost > 50

    # and the link comes back
    link.set(up=Impairment(), down=Impairment())
    try:
        await wait_for(lambda: seen_by_b.frames > frames_b + 15 and seen_by_a.frames > frames_a + 15, timeout=15)
    except AssertionError:  # which way stayed frozen, whether its packets arrived (kbit/s each second), and what
        # each site's downlink chose (a paused video is the relay's estimator; packets not arriving, the forwarder)
        now = time.monotonic()
        raise AssertionError({name: (seen.frames - before, seen.received_bytes.each_second(15))
                              for name, seen, before in (("A to B", seen_by_b, frames_b),
                                                         ("B to A", seen_by_a, frames_a))},
                             {name: [(round(at - now, 1), data) for at, data in events[-8:]]
                              for name, events in adaptation.items()}) from None
