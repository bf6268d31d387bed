"""Several signaling processes as one (real Redis, real processes, real aiortc peers): a room's members on two
processes see each other and its capacity holds across them; a signaling process killed with SIGKILL, its
participant resumes through another one and keeps its media."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from cluster_support import Balancer, Cluster, join_ack, needs_redis
from support import PatternVideoTrack, ToneAudioTrack, wait_for

from client.participant import Participant

pytestmark = needs_redis


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    cluster = Cluster(tmp_path_factory.mktemp("sigcluster"), "redis://127.0.0.1:6379/0",
                      extra={"HOICHAN_MEDIA__ROOM_MAX_PARTICIPANTS": "2"})
    try:
        cluster.add_signaling()
        cluster.add_signaling()
        cluster.add_node("node-a")
        asyncio.run(cluster.registered("node-a"))
        yield cluster
    finally:
        cluster.stop()


def peer(url: str, room: str, name: str, token: str | None = None) -> Participant:
    return Participant(url, room, name, tracks=[PatternVideoTrack(), ToneAudioTrack()], token=token)


def frames(x: Participant, y: Participant) -> int:
    """Video frames ``x`` received from ``y``, over every track (a restart brings new ones)."""
    return sum(r.frames for r in x.received.values() if r.participant_id == y.id and r.kind == "video")


async def flowing(a: Participant, b: Participant, more_than: tuple[int, int] = (0, 0), timeout: float = 20) -> None:
    """Both see at least 10 more video frames of the other than ``more_than``."""
    await wait_for(lambda: frames(a, b) > more_than[0] + 10 and frames(b, a) > more_than[1] + 10, timeout)


async def test_a_room_spans_signaling_processes_and_its_capacity_holds_across_them(cluster: Cluster) -> None:
    sig_a, sig_b = cluster.signaling
    a, b = peer(sig_a.url, "ward-span", "A"), peer(sig_b.url, "ward-span", "B")
    try:
        await a.join()
        welcome = await b.join()
        assert a.id in welcome["peers"]  # B's welcome lists the member on the other process
        await wait_for(lambda: b.id in a.peers, 10)  # and A heard peer-joined from the other process
        await flowing(a, b)
        for server in (sig_a, sig_b):  # two members, on two processes: the room is full on every process
            ack, _ = await join_ack(server.url, "ward-span")
            assert ack["error"]["code"] == "room-full", ack
        await b.sio.call("media-state", {"audioMuted": True, "videoOff": False}, timeout=10)
        await wait_for(lambda: a.peers.get(b.id or "", {}).get("audioMuted") is True, 10)
        await b.leave()
        await wait_for(lambda: b.id not in a.peers, 10)  # peer-left crossed processes too
        ack, _ = await join_ack(sig_b.url, "ward-span")  # the seat B gave up is free again
        assert ack["ok"], ack
    finally:
        await a.leave()
        await b.leave()


async def test_two_joins_racing_for_the_last_seat_on_two_processes_one_gets_it(cluster: Cluster) -> None:
    sig_a, sig_b = cluster.signaling
    first = peer(sig_a.url, "ward-race", "first")
    try:
        await first.join()
        (ack_a, _), (ack_b, _) = await asyncio.gather(join_ack(sig_a.url, "ward-race"),
                                                      join_ack(sig_b.url, "ward-race"))
        assert sorted([ack_a["ok"], ack_b["ok"]]) == [False, True], (ack_a, ack_b)
        loser = ack_a if not ack_a["ok"] else ack_b
        assert loser["error"]["code"] == "room-full"
    finally:
        await first.leave()


async def test_a_killed_signaling_process_participant_resumes_elsewhere_and_keeps_media(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    cluster = Cluster(tmp_path_factory.mktemp("sigfailover"), "redis://127.0.0.1:6379/0")
    balancer: Balancer | None = None
    x = y = None
    try:
        sig_a, sig_b = cluster.add_signaling(), cluster.add_signaling()
        cluster.add_node("node-f")
        await cluster.registered("node-f")
        balancer = Balancer([sig_a, sig_b])  # sends X to A while A lives, then to B
        await balancer.start()
        x, y = peer(balancer.url, "ward-failover", "X"), peer(sig_b.url, "ward-failover", "Y")
        await x.join()
        await y.join()
        await flowing(x, y)
        x_id, offers = x.id, x.offers
        sig_a.kill()
        killed_at = asyncio.get_running_loop().time()
        seen = (frames(x, y), frames(y, x))
        await wait_for(lambda: x.offers > offers, 30)  # resumed through B, which restarted its media
        await flowing(x, y, more_than=(0, seen[1]), timeout=30)
        recovered = asyncio.get_running_loop().time() - killed_at
        assert x.id == x_id  # the same participant, not a new one
        assert x_id in y.peers  # Y never saw X leave
        assert not [e for e in x.errors if e.get("code") == "bad-resume"], x.errors
        print(f"media flowing both ways again {recovered:.1f} s after the SIGKILL")
    finally:
        for p in (x, y):
            if p is not None:
                await p.leave()
        if balancer is not None:
            await balancer.close()
        cluster.stop()
