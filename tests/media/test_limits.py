"""Site limits through the real relay: a point's uplink cap lowers what an aiortc publisher sends (REMB), and an
audio-only site keeps the room working within 64 kbit/s while the others keep their video."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from support import PatternVideoTrack, Server, wait_for

from client.participant import Participant
from client.speech import SpeechTrack
from media import hooks
from media.errors import MediaError
from media.limits import AUDIO_ONLY_DOWN_BPS, Limits

pytestmark = pytest.mark.solo

POINT = "ttyt-muong-te-hc1"  # the test doctor's and technician's facility


class TurnTaker(SpeechTrack):
    """Speech in turns, as a conversation goes: talker ``turn`` of ``of`` talks 2 s in each ``2·of`` s (wall clock),
    the others are silent (DTX) meanwhile."""

    def __init__(self, turn: int, of: int) -> None:
        super().__init__(seed=turn)
        self.turn, self.of = turn, of

    def talking(self, frame: int) -> bool:
        return int(time.time() / 2) % self.of == self.turn


@pytest.mark.parametrize("wire", [
    {"uplinkKbps": 10}, {"uplinkKbps": 30_000}, {"uplinkKbps": 300.0}, {"downlinkKbps": "300"},
    {"downlinkKbps": True}, {"audioOnly": 1}, {"uplinkKbps": 300, "other": 1}, ["uplinkKbps"],
])
def test_limits_from_the_wire_are_checked_again(wire: object) -> None:
    with pytest.raises(MediaError) as raised:
        Limits.from_dict(wire)  # type: ignore[arg-type]
    assert raised.value.code == "invalid-payload"


def test_limits_say_what_video_may_be_sent_and_received() -> None:
    assert Limits.from_dict(None) == Limits.from_dict({}) == Limits()
    assert Limits().video_remb_bps() is None and Limits().downlink_bps() is None
    capped = Limits.from_dict({"uplinkKbps": 300, "downlinkKbps": 500, "audioOnly": False})
    assert capped.video_remb_bps() == 260_000  # 40 kbit/s kept for the site's audio
    assert capped.downlink_bps() == 500_000
    assert Limits(uplink_kbps=40).video_remb_bps() == 32_000  # never below the floor
    assert Limits(downlink_kbps=500, audio_only=True).downlink_bps() == AUDIO_ONLY_DOWN_BPS
    assert Limits(uplink_kbps=300, audio_only=True).video_remb_bps() == 32_000
    assert Limits(downlink_kbps=40, audio_only=True).downlink_bps() == 40_000
    assert Limits.from_dict(capped.as_dict()) == capped


@pytest.fixture
async def cleanup(server: Server) -> AsyncIterator[list[Participant]]:
    created: list[Participant] = []
    yield created
    await asyncio.gather(*(p.leave() for p in created), return_exceptions=True)
    await server.request("DELETE", f"/api/points/{POINT}/caps", token=await server.login("technician"))


def samples_of(sink: list[dict[str, Any]], participant: Participant, since: float) -> list[dict[str, Any]]:
    return [q for q in sink if q["participantId"] == participant.id and q["at"] >= since]


def video_sender_remb(participant: Participant) -> int | None:
    assert participant.pc is not None
    sender = next(t.sender for t in participant.pc.getTransceivers()
                  if t.kind == "video" and t.sender.track is not None)
    return hooks.watch_feedback(sender).remb


async def test_an_uplink_cap_lowers_what_the_publisher_sends(server: Server, cleanup: list[Participant]) -> None:
    publisher = Participant(server.url, "capped", "-", tracks=[PatternVideoTrack(), SpeechTrack()],
                            token=await server.login("doctor"), point=POINT)
    viewer = Participant(server.url, "capped", "Viewer", tracks=[SpeechTrack()])
    cleanup += [publisher, viewer]
    quality: list[dict[str, Any]] = []
    viewer.sio.on("link-quality", quality.append)
    await publisher.join()
    await viewer.join()
    await wait_for(lambda: viewer.video_from(publisher.id or "") is not None, timeout=20)
    hooks.watch_feedback(next(t.sender for t in publisher.pc.getTransceivers()  # type: ignore[union-attr]
                              if t.kind == "video" and t.sender.track is not None))
    # uncapped, aiortc's VP8 encoder sends its default 500 kbit/s
    await wait_for(lambda: any(q["sendKbps"] > 420 for q in samples_of(quality, publisher, 0)), timeout=20)

    status, answer = await server.request("PUT", f"/api/points/{POINT}/caps", token=await server.login("technician"),
                                          json={"uplinkKbps": 300})
    assert status == 200 and answer["caps"]["uplinkKbps"] == 300, answer
    capped_at = time.time()
    await wait_for(lambda: publisher.limits.get("uplinkKbps") == 300, timeout=5)  # told like everyone in the room
    await wait_for(lambda: viewer.peers[publisher.id or ""]["limits"].get("uplinkKbps") == 300, timeout=5)
    # its REMB says 300 kbit/s less its audio's share, and what it sends follows within a few seconds
    await wait_for(lambda: (video_sender_remb(publisher) or 1 << 30) <= 260_000, timeout=10)
    await wait_for(lambda: len(samples_of(quality, publisher, capped_at + 4)) >= 3, timeout=20)
    settled = samples_of(quality, publisher, capped_at + 4)
    assert all(q["sendKbps"] <= 330 for q in settled), [q["sendKbps"] for q in settled]
    assert settled[-1]["adaptation"]["uplinkCapKbps"] == 300
    assert (video_sender_remb(publisher) or 0) <= 300_000

    # lifted: the estimator's REMB is no longer capped and the publisher goes back up
    status, _ = await server.request("DELETE", f"/api/points/{POINT}/caps", token=await server.login("technician"))
    assert status == 200
    lifted_at = time.time()
    await wait_for(lambda: any(q["sendKbps"] > 420 for q in samples_of(quality, publisher, lifted_at)), timeout=20)
    assert samples_of(quality, publisher, lifted_at)[-1]["adaptation"]["uplinkCapKbps"] is None


async def test_an_audio_only_site_stays_within_64_kbps_while_the_others_keep_video(
        server: Server, cleanup: list[Participant]) -> None:
    a = Participant(server.url, "audio-only", "A", tracks=[PatternVideoTrack(320, 240), TurnTaker(0, 3)])
    b = Participant(server.url, "audio-only", "B", tracks=[PatternVideoTrack(320, 240), TurnTaker(1, 3)])
    c = Participant(server.url, "audio-only", "C", tracks=[PatternVideoTrack(320, 240), TurnTaker(2, 3)])
    cleanup += [a, b, c]
    quality: list[dict[str, Any]] = []
    a.sio.on("link-quality", quality.append)
    for p in (a, b, c):
        await p.join()
    await wait_for(lambda: all(x.video_from(y.id or "") is not None and x.video_from(y.id or "").frames > 10
                               for x in (a, b, c) for y in (a, b, c) if x is not y), timeout=30)

    assert await c.set_audio_only(True) == {"ok": True, "limits": {"uplinkKbps": None, "downlinkKbps": None,
                                                                   "audioOnly": True}}
    switched = time.time()
    await wait_for(lambda: a.peers[c.id or ""]["limits"].get("audioOnly") is True, timeout=5)
    await asyncio.sleep(4)  # the relay's next allocations, the last video in flight
    c_video_at_a = a.video_from(c.id or "").frames  # type: ignore[union-attr]
    a_video_at_c = c.video_from(a.id or "").frames  # type: ignore[union-attr]
    b_video_at_a = a.video_from(b.id or "").frames  # type: ignore[union-attr]
    c_audio_at_a = a.audio_from(c.id or "").frames  # type: ignore[union-attr]
    a_audio_at_c = c.audio_from(a.id or "").frames  # type: ignore[union-attr]
    await asyncio.sleep(12)  # two rounds of turns
    measured = samples_of(quality, c, switched + 5)
    assert len(measured) >= 4, measured
    totals = [q["sendKbps"] + q["recvKbps"] for q in measured]
    assert sum(totals) / len(totals) <= 64, totals
    assert max(totals) <= 64 * 1.15, totals  # a 2 s sample may straddle two talkers' turns
    # no video to or from C; A and B keep theirs; everyone still hears everyone
    assert a.video_from(c.id or "").frames - c_video_at_a <= 2  # type: ignore[union-attr]
    assert c.video_from(a.id or "").frames - a_video_at_c <= 2  # type: ignore[union-attr]
    assert a.video_from(b.id or "").frames - b_video_at_a > 60  # type: ignore[union-attr]  # ≥ 5 fps when loaded
    assert a.audio_from(c.id or "").frames - c_audio_at_a > 100  # type: ignore[union-attr]
    assert c.audio_from(a.id or "").frames - a_audio_at_c > 100  # type: ignore[union-attr]
    assert measured[-1]["adaptation"]["audioOnly"] is True
    assert all(v["reason"] == "audio-only" for v in measured[-1]["adaptation"]["videos"].values())

    # back to video: C's picture reaches A again
    await c.set_audio_only(False)
    back = a.video_from(c.id or "").frames  # type: ignore[union-attr]
    await wait_for(lambda: a.video_from(c.id or "").frames > back + 30, timeout=15)  # type: ignore[union-attr]
