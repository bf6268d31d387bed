"""Live link quality end to end: the media worker samples each participant, the whole room hears of it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from support import PatternVideoTrack, Server, ToneAudioTrack, wait_for

from client.link_emulator import Impairment, LinkEmulator
from client.participant import Participant

pytestmark = pytest.mark.solo


@pytest.fixture
async def cleanup() -> AsyncIterator[list[Participant]]:
    created: list[Participant] = []
    yield created
    await asyncio.gather(*(p.leave() for p in created), return_exceptions=True)


async def test_both_participants_see_each_others_link_quality(server: Server, cleanup: list[Participant]) -> None:
    a, b = (Participant(server.url, "links", n, tracks=[PatternVideoTrack(320, 240), ToneAudioTrack()]) for n in "AB")
    cleanup += [a, b]
    seen: dict[str, list[dict[str, Any]]] = {"A": [], "B": []}
    a.sio.on("link-quality", lambda data: seen["A"].append(data))
    b.sio.on("link-quality", lambda data: seen["B"].append(data))
    await a.join()
    await b.join()
    await wait_for(lambda: (v := a.video_from(b.id)) is not None and v.frames > 10
                   and (w := b.video_from(a.id)) is not None and w.frames > 10, timeout=15)

    def about(who: str, pid: str | None) -> list[dict[str, Any]]:
        return [s for s in seen[who] if s["participantId"] == pid]

    # sampled every 2 s: within 5 s each side has heard about both participants
    await wait_for(lambda: all(about(w, p) for w in "AB" for p in (a.id, b.id)), timeout=5)
    # the round-trip time appears once a receiver report has echoed a sender report
    await wait_for(lambda: all(about("A", p) and about("A", p)[-1]["rttMs"] is not None for p in (a.id, b.id)),
                   timeout=10)
    for pid in (a.id, b.id):
        sample = about("A", pid)[-1]
        assert sample["grade"] in ("excellent", "good"), sample
        assert 1.0 <= sample["mos"] <= 4.5
        assert 0 <= sample["rttMs"] < 200
        assert sample["jitterMs"] is not None and 0 <= sample["jitterMs"] < 100
        assert sample["lossUp"] is not None and sample["lossUp"] < 0.01
        assert sample["lossDown"] is not None and sample["lossDown"] < 0.01
        assert sample["sendKbps"] > 10 and sample["recvKbps"] > 10  # both publish audio and video
        assert sample["candidate"] == {"local": "host", "remote": "host", "protocol": "udp"}
        assert set(sample) >= {"rembKbps", "rembDownKbps", "at"}


async def test_ten_percent_loss_turns_the_grade_poor_within_5_s_and_good_within_10_s_after(
    server: Server, cleanup: list[Participant],
) -> None:
    """The acceptance test of live grades: A's link (through the emulator) loses 10 % both ways for 12 s; B,
    in the same room, sees A's grade turn poor within 5 s of the start and back to good within 10 s of the end."""
    link = LinkEmulator()
    a = Participant(server.url, "lossy", "A", tracks=[PatternVideoTrack(320, 240), ToneAudioTrack()], emulator=link)
    b = Participant(server.url, "lossy", "B", tracks=[PatternVideoTrack(320, 240), ToneAudioTrack()])
    cleanup += [a, b]
    grades: list[tuple[float, str]] = []
    samples: list[tuple[float, str, float, float | None, float | None]] = []  # for a failure's message

    def note(sample: dict[str, Any]) -> None:
        if sample["participantId"] == a.id:
            grades.append((time.monotonic(), sample["grade"]))
            samples.append((round(time.monotonic() - started, 1), sample["grade"], sample["mos"], sample["lossUp"],
                            sample["lossDown"]))

    started = time.monotonic()
    b.sio.on("link-quality", note)
    try:
        await a.join()
        await b.join()
        await wait_for(lambda: len(grades) >= 2 and grades[-1][1] in ("good", "excellent"), timeout=20)

        link.set(up=Impairment(loss=0.10), down=Impairment(loss=0.10))
        started = time.monotonic()
        await wait_for(lambda: grades[-1][1] == "poor", timeout=5)
        poor_after = grades[-1][0] - started
        await asyncio.sleep(max(0.0, started + 12 - time.monotonic()))
        assert all(g == "poor" for at, g in grades if at > started + poor_after), samples  # it stays poor while lossy

        link.set(up=Impairment(), down=Impairment())
        ended = time.monotonic()
        await wait_for(lambda: grades[-1][1] in ("good", "excellent"), timeout=10)
        print(f"poor {poor_after:.1f} s after the loss began, good {grades[-1][0] - ended:.1f} s after it ended")
    finally:
        link.close()
