"""Media in worker processes: rooms spread across workers, a killed worker is replaced and calls resume."""

from __future__ import annotations

import asyncio
import os
import signal

from support import PatternVideoTrack, Server, ToneAudioTrack, server_fixture, wait_for

from client.participant import Participant


two_workers = server_fixture("workers", {"HOICHAN_MEDIA__WORKERS": "2"})
in_process = server_fixture("inproc", {"HOICHAN_MEDIA__WORKERS": "0"})


def pair(server: Server, room: str) -> tuple[Participant, Participant]:
    return tuple(  # type: ignore[return-value]
        Participant(server.url, room, n, tracks=[PatternVideoTrack(), ToneAudioTrack()]) for n in "AB"
    )


async def flowing(a: Participant, b: Participant) -> None:
    await wait_for(lambda: all((v := x.video_from(y.id)) is not None and v.frames > 10
                               for x, y in ((a, b), (b, a))), timeout=15)


async def test_rooms_are_spread_across_workers(two_workers: Server) -> None:
    rooms = [pair(two_workers, "spread-1"), pair(two_workers, "spread-2")]
    try:
        for a, b in rooms:
            await a.join()
            await b.join()
        for a, b in rooms:
            await flowing(a, b)
        _, health = await two_workers.get("/healthz")
        assert sorted(w["participants"] for w in health["workers"]) == [2, 2]
    finally:
        await asyncio.gather(*(p.leave() for room in rooms for p in room))


async def test_a_killed_worker_is_replaced_and_the_call_resumes(two_workers: Server) -> None:
    a, b = pair(two_workers, "crash")
    try:
        await a.join()
        await b.join()
        await flowing(a, b)
        _, health = await two_workers.get("/healthz")
        victim = next(w["pid"] for w in health["workers"] if w["participants"] == 2)
        os.kill(victim, signal.SIGKILL)
        # both participants are told their media failed, reconnect, and see each other again
        await wait_for(lambda: a.pc is not None and b.pc is not None and a.offers >= 3 and b.offers >= 2, timeout=10)
        await flowing(a, b)
        _, health = await two_workers.get("/healthz")
        assert victim not in [w["pid"] for w in health["workers"]]
    finally:
        await asyncio.gather(a.leave(), b.leave())


async def test_media_can_run_inside_the_server_process(in_process: Server) -> None:
    a, b = pair(in_process, "inproc")
    try:
        await a.join()
        await b.join()
        await flowing(a, b)
        _, health = await in_process.get("/healthz")
        assert "workers" not in health and health["forwarded_streams"] == 4
    finally:
        await asyncio.gather(a.leave(), b.leave())
