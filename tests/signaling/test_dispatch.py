"""Dispatch through a real server: the accept race, escalation order and timing, decline, cancel, duty, presence,
the consult room's door, and bad requests (each refused clearly, changing nothing).

Ring times are short here (emergency: 1 s a wave). A cardiology call from Trung tâm Y tế Mường Tè rings, with two
partners per wave: Bạch Mai + Việt Đức, then Thái Nguyên + E, then every other central hospital (Chợ Rẫy, ...).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from support import ACCOUNTS, PatternVideoTrack, Server, ToneAudioTrack, server_fixture, wait_for

from client.lobby import LobbyClient
from client.participant import Participant

EMERGENCY_SECONDS = 1.0
dispatching = server_fixture(
    "dispatching",
    {
        "HOICHAN_DISPATCH__RING_SECONDS__ROUTINE": "60",
        "HOICHAN_DISPATCH__RING_SECONDS__URGENT": "60",
        "HOICHAN_DISPATCH__RING_SECONDS__EMERGENCY": str(EMERGENCY_SECONDS),
        "HOICHAN_DISPATCH__PARTNERS_PER_WAVE": "2",
    },
)
CARDIOLOGY = {"specialty": "tim-mach", "urgency": "routine", "summary": "Nam 58 tuổi, đau ngực trái 2 giờ, ST chênh."}

Open = Callable[..., Awaitable[LobbyClient]]


@pytest.fixture
async def lobby(dispatching: Server) -> AsyncIterator[Open]:
    """Open lobby pages signed in as ACCOUNTS[alias]; on teardown, cancel what they left ringing and go off duty."""
    opened: list[tuple[str, LobbyClient]] = []

    async def open_lobby(alias: str, on_duty: bool | None = None, point: str | None = None) -> LobbyClient:
        client = LobbyClient(dispatching.url, await dispatching.login(alias), ACCOUNTS[alias]["username"])
        await client.connect()
        answer = await client.enter(point, on_duty)
        assert answer["ok"], answer
        opened.append((alias, client))
        return client

    yield open_lobby
    for alias, client in opened:
        for received in client.states:
            state = client.latest(received.payload["id"])
            if state and state["state"] == "ringing" and state["caller"]["username"] == client.username:
                await client.call("consult-cancel", {"consult": state["id"]})
        if ACCOUNTS[alias]["facility"].startswith("bv-") and client.sio.connected:
            await client.call("duty", {"onDuty": False})
        await client.close()


async def request(caller: LobbyClient, **changes: Any) -> dict[str, Any]:
    answer = await caller.call("consult-request", {**CARDIOLOGY, **changes})
    assert answer["ok"], answer
    return answer["consult"]  # type: ignore[no-any-return]


def ringing(client: LobbyClient, consult_id: str) -> bool:
    ring = client.my_ring(consult_id)
    return ring is not None and ring["status"] == "ringing"


async def test_two_doctors_accepting_at_once_one_wins_the_other_is_told(dispatching: Server, lobby: Open) -> None:
    caller = await lobby("doctor")
    first, second = await lobby("specialist", on_duty=True), await lobby("specialist2", on_duty=True)
    for attempt in range(5):  # the race, several times over
        consult = await request(caller, summary=f"Ca {attempt}: đau ngực")
        for doctor in (first, second):
            await doctor.wait(lambda d=doctor: ringing(d, consult["id"]))
        answers = await asyncio.gather(
            first.call("consult-accept", {"consult": consult["id"]}),
            second.call("consult-accept", {"consult": consult["id"]}),
        )
        winners = [a for a in answers if a["ok"]]
        losers = [a for a in answers if not a["ok"]]
        assert len(winners) == 1 and len(losers) == 1, answers
        winner = winners[0]["consult"]["answeredBy"]["username"]
        assert losers[0]["error"]["code"] == "already-answered"
        assert ACCOUNTS["specialist"]["display_name"] in losers[0]["error"]["message"] or \
            ACCOUNTS["specialist2"]["display_name"] in losers[0]["error"]["message"]
        # everyone ends up seeing the same outcome: answered by the winner, every other ring stopped
        for page in (caller, first, second):
            await page.wait(lambda p=page: (p.latest(consult["id"]) or {}).get("state") == "answered")
            state = page.latest(consult["id"])
            assert state is not None and state["answeredBy"]["username"] == winner
            assert state["room"] == f"consult-{consult['id']}"
            assert sorted(r["status"] for r in state["rings"]) == ["accepted", "stopped"]
        _, logged = await dispatching.get(f"/api/consults/{consult['id']}", user="admin")
        assert [e["username"] for e in logged["events"] if e["kind"] == "accepted"] == [winner]
        assert logged["outcome"] == "answered" and logged["answeredBy"]["username"] == winner


async def test_escalation_order_and_timing(dispatching: Server, lobby: Open) -> None:
    caller = await lobby("doctor")
    wave1 = await lobby("specialist", on_duty=True)  # Bạch Mai: a partner in the first wave
    wave2 = await lobby("thainguyen", on_duty=True)  # Thái Nguyên: a partner in the second wave
    wave3 = await lobby("choray", on_duty=True)  # Chợ Rẫy: not a partner, last wave
    other = await lobby("pediatrician", on_duty=True)  # paediatrics: never rung for cardiology
    off = await lobby("specialist2", on_duty=False)  # off duty: never rung
    consult = await request(caller, urgency="emergency")
    doctors = {"wave1": wave1, "wave2": wave2, "wave3": wave3}
    for doctor in doctors.values():
        await doctor.wait(lambda d=doctor: ringing(d, consult["id"]), timeout=10)
    await caller.wait(lambda: (caller.latest(consult["id"]) or {}).get("state") == "unanswered", timeout=10)

    # from the caller's page: when each doctor's ring started, and that earlier waves kept ringing
    started = {
        name: next(r for r in caller.states if any(g["username"] == d.username for g in r.payload["rings"]
                                                    if g["status"] == "ringing")).at  # fmt: skip
        for name, d in doctors.items()
    }
    ended = next(r.at for r in caller.states if r.payload["state"] == "unanswered")
    t0 = started["wave1"]
    assert 0.9 * EMERGENCY_SECONDS <= started["wave2"] - t0 <= 1.9 * EMERGENCY_SECONDS, started
    assert 1.9 * EMERGENCY_SECONDS <= started["wave3"] - t0 <= 3.0 * EMERGENCY_SECONDS, started
    assert 2.9 * EMERGENCY_SECONDS <= ended - t0 <= 4.2 * EMERGENCY_SECONDS, (started, ended)
    wave3_state = next(r.payload for r in caller.states if r.payload["wave"] == 3)
    assert {r["username"]: (r["wave"], r["status"]) for r in wave3_state["rings"]} == {
        wave1.username: (1, "ringing"), wave2.username: (2, "ringing"), wave3.username: (3, "ringing")}
    assert wave3_state["waves"] == 3 and wave3_state["waveEndsAt"] is not None
    assert other.latest(consult["id"]) is None and off.latest(consult["id"]) is None
    final = caller.latest(consult["id"])
    assert final is not None and {r["status"] for r in final["rings"]} == {"stopped"}

    # the log has the same story, with monotonic offsets from the request
    _, logged = await dispatching.get(f"/api/consults/{consult['id']}", user="admin")
    rings = [(e["username"], e["detail"], e["elapsedMs"]) for e in logged["events"] if e["kind"] == "ring"]
    assert [(u, d) for u, d, _ in rings] == [(wave1.username, "wave 1"), (wave2.username, "wave 2"),
                                             (wave3.username, "wave 3")]  # fmt: skip
    assert rings[0][2] < 200 and 950 <= rings[1][2] <= 1500 and 1950 <= rings[2][2] <= 2600, rings
    assert logged["outcome"] == "unanswered" and logged["answeredBy"] is None
    assert [e["kind"] for e in logged["events"]][-4:] == ["unanswered", "stopped", "stopped", "stopped"]


async def test_waves_with_nobody_on_duty_are_passed_at_once(dispatching: Server, lobby: Open) -> None:
    caller = await lobby("doctor")
    last = await lobby("choray", on_duty=True)  # the partners' doctors are all offline or off duty
    consult = await request(caller)
    await last.wait(lambda: ringing(last, consult["id"]), timeout=5)
    state = last.latest(consult["id"])
    assert state is not None and state["wave"] == state["waves"] == 3 and len(state["rings"]) == 1


async def test_a_target_hospital_rings_first(dispatching: Server, lobby: Open) -> None:
    caller = await lobby("doctor")
    partner = await lobby("specialist", on_duty=True)
    chosen = await lobby("choray", on_duty=True)
    consult = await request(caller, target="bv-cho-ray")
    await chosen.wait(lambda: ringing(chosen, consult["id"]))
    await asyncio.sleep(0.5)
    assert partner.latest(consult["id"]) is None  # the partners come in the next wave, after the ring time


async def test_decline_escalates_at_once(dispatching: Server, lobby: Open) -> None:
    caller = await lobby("doctor")
    first, second = await lobby("specialist", on_duty=True), await lobby("thainguyen", on_duty=True)
    consult = await request(caller)  # routine: 60 s a wave, so only the decline can move it on
    await first.wait(lambda: ringing(first, consult["id"]))
    assert second.latest(consult["id"]) is None
    declined = await first.call("consult-decline", {"consult": consult["id"]})
    assert declined["ok"] and declined["consult"]["wave"] == 2
    await second.wait(lambda: ringing(second, consult["id"]), timeout=3)
    assert first.my_ring(consult["id"])["status"] == "declined"  # type: ignore[index]
    again = await first.call("consult-accept", {"consult": consult["id"]})
    assert not again["ok"] and again["error"]["code"] == "not-ringing"


async def test_cancel_while_ringing(dispatching: Server, lobby: Open) -> None:
    caller = await lobby("doctor")
    doctor = await lobby("specialist", on_duty=True)
    stranger = await lobby("other_doctor")
    consult = await request(caller)
    await doctor.wait(lambda: ringing(doctor, consult["id"]))
    refused = await stranger.call("consult-cancel", {"consult": consult["id"]})
    assert not refused["ok"] and refused["error"]["code"] == "forbidden"
    cancelled = await caller.call("consult-cancel", {"consult": consult["id"]})
    assert cancelled["ok"] and cancelled["consult"]["state"] == "cancelled"
    await doctor.wait(lambda: (doctor.latest(consult["id"]) or {}).get("state") == "cancelled")
    assert doctor.my_ring(consult["id"])["status"] == "stopped"  # type: ignore[index]
    late = await doctor.call("consult-accept", {"consult": consult["id"]})
    assert not late["ok"] and late["error"]["code"] == "consult-closed"
    again = await caller.call("consult-cancel", {"consult": consult["id"]})
    assert not again["ok"] and again["error"]["code"] == "consult-closed"
    _, logged = await dispatching.get(f"/api/consults/{consult['id']}", user="admin")
    assert logged["outcome"] == "cancelled" and logged["closedAt"] is not None


async def test_coming_on_duty_while_a_call_rings_rings_at_once(dispatching: Server, lobby: Open) -> None:
    caller = await lobby("doctor")
    doctor = await lobby("specialist", on_duty=False)
    consult = await request(caller)
    await asyncio.sleep(0.3)
    assert doctor.latest(consult["id"]) is None
    assert (await doctor.call("duty", {"onDuty": True}))["ok"]
    await doctor.wait(lambda: ringing(doctor, consult["id"]), timeout=3)
    # going off duty ends the ring; nobody left ringing → the next wave at once
    assert (await doctor.call("duty", {"onDuty": False}))["ok"]
    await caller.wait(lambda: (caller.latest(consult["id"]) or {}).get("wave", 0) >= 2, timeout=3)
    assert doctor.my_ring(consult["id"])["status"] == "off-duty"  # type: ignore[index]


async def test_only_central_doctors_go_on_duty(dispatching: Server, lobby: Open) -> None:
    district = await lobby("doctor")
    refused = await district.call("duty", {"onDuty": True})
    assert not refused["ok"] and refused["error"]["code"] == "forbidden"
    _, seen = await dispatching.get("/api/presence", user="admin")
    assert {d["username"]: d["onDuty"] for d in seen["doctors"]}[district.username] is False


async def test_presence_shows_points_doctors_and_duty(dispatching: Server, lobby: Open) -> None:
    technician = await lobby("technician", point="ttyt-muong-te-hc1")
    doctor = await lobby("specialist", on_duty=False, point="bv-bach-mai-hc1")
    assert (await doctor.call("duty", {"onDuty": True}))["ok"]
    status, seen = await dispatching.get("/api/presence", user="doctor")
    assert status == 200
    assert {"ttyt-muong-te-hc1", "bv-bach-mai-hc1"} <= {p["id"] for p in seen["points"]}
    assert {"username": doctor.username, "displayName": ACCOUNTS["specialist"]["display_name"],
            "facility": "bv-bach-mai", "specialties": ["tim-mach"], "onDuty": True} in seen["doctors"]  # fmt: skip
    assert seen["onDuty"].get("tim-mach", 0) >= 1
    await technician.wait(lambda: any(p.payload["onDuty"].get("tim-mach") for p in technician.presence), timeout=5)
    # a point of another facility, or unknown: refused, nothing registered
    for point, code in (("ttyt-sin-ho-hc1", "forbidden"), ("khong-co", "unknown-point")):
        answer = await technician.call("lobby-enter", {"point": point})
        assert not answer["ok"] and answer["error"]["code"] == code
    await doctor.close()
    _, after = await dispatching.get("/api/presence", user="doctor")
    assert "bv-bach-mai-hc1" not in {p["id"] for p in after["points"]}
    assert doctor.username not in {d["username"] for d in after["doctors"]}


BAD_REQUESTS = [
    ({"specialty": "chiem-tinh"}, "unknown-specialty", "'chiem-tinh' is not in the directory"),
    ({"target": "bv-khong-co"}, "unknown-facility", "'bv-khong-co' is not in the directory"),
    ({"target": "bvdk-lai-chau"}, "invalid-target", "does not answer consults for tim-mach"),
    ({"target": "bv-k"}, "invalid-target", "Bệnh viện K does not answer consults for tim-mach"),
    ({"point": "ttyt-sin-ho-hc1"}, "forbidden", "belongs to another facility"),
    ({"point": "khong-co"}, "unknown-point", "'khong-co' is not in the directory"),
    ({"urgency": "soon"}, "invalid-payload", "urgency"),
    ({"summary": "x" * 1001}, "invalid-payload", "summary"),
    ({"summary": "   "}, "invalid-payload", "summary"),
    ({"specialty": "Tim Mạch"}, "invalid-payload", "specialty"),
    ({"extra": 1}, "invalid-payload", "extra"),
]


@pytest.mark.parametrize(("change", "code", "words"), BAD_REQUESTS)
async def test_bad_requests_are_refused_and_change_nothing(
    dispatching: Server, lobby: Open, change: dict[str, Any], code: str, words: str
) -> None:
    caller = await lobby("doctor")
    doctor = await lobby("specialist", on_duty=True)
    _, before = await dispatching.get("/api/consults", user="admin")
    answer = await caller.call("consult-request", {**CARDIOLOGY, **change})
    assert not answer["ok"] and answer["error"]["code"] == code and words in answer["error"]["message"], answer
    assert caller.errors[-1]["code"] == code
    await asyncio.sleep(0.2)
    assert doctor.states == []
    assert (await dispatching.get("/api/consults", user="admin"))[1] == before


async def test_central_doctors_do_not_request(dispatching: Server, lobby: Open) -> None:
    central = await lobby("specialist2")
    answer = await central.call("consult-request", CARDIOLOGY)
    assert not answer["ok"] and answer["error"]["code"] == "forbidden"


async def test_unknown_consult_ids(dispatching: Server, lobby: Open) -> None:
    doctor = await lobby("specialist", on_duty=True)
    for event in ("consult-accept", "consult-decline", "consult-cancel"):
        missing = await doctor.call(event, {"consult": "0123456789abcdef"})
        assert not missing["ok"] and missing["error"]["code"] in ("not-found", "forbidden")
        malformed = await doctor.call(event, {"consult": "../../etc"})
        assert not malformed["ok"] and malformed["error"]["code"] == "invalid-payload"


async def test_consult_room_admits_only_its_parties_and_invited_experts(dispatching: Server, lobby: Open) -> None:
    caller = await lobby("doctor")
    answerer = await lobby("specialist", on_duty=True)
    expert_lobby = await lobby("pediatrician")
    consult = await request(caller)
    await answerer.wait(lambda: ringing(answerer, consult["id"]))
    accepted = await answerer.call("consult-accept", {"consult": consult["id"]})
    room = accepted["consult"]["room"]

    async def join(alias: str | None, admitted: bool = True) -> Participant:
        token = await dispatching.login(alias) if alias else None
        p = Participant(dispatching.url, room, "Khách", tracks=[PatternVideoTrack(), ToneAudioTrack()], token=token)
        if admitted:
            await p.join()
        else:  # a refused join never completes: connect, and the join's error arrives
            await p.sio.connect(dispatching.url, transports=["websocket"], auth={"token": token} if token else None)
        return p

    # strangers: another doctor (even a central one), a technician of the caller's own facility, a guest
    for alias in ("specialist2", "technician", None):
        stranger = await join(alias, admitted=False)
        try:
            await wait_for(lambda s=stranger: bool(s.errors), timeout=10)
            assert stranger.errors[0]["code"] == "forbidden", stranger.errors
        finally:
            await stranger.sio.disconnect()
    guessed = Participant(dispatching.url, "consult-0123456789abcdef", "X", token=await dispatching.login("doctor"))
    await guessed.sio.connect(dispatching.url, transports=["websocket"],
                              auth={"token": await dispatching.login("doctor")})  # fmt: skip
    await wait_for(lambda: bool(guessed.errors), timeout=10)
    assert guessed.errors[0]["code"] == "not-found"
    await guessed.sio.disconnect()

    # the parties: media flows between them
    parties = [await join("doctor"), await join("specialist")]
    try:
        for me, other in ((parties[0], parties[1]), (parties[1], parties[0])):
            await wait_for(lambda m=me, o=other: o.id is not None and (v := m.video_from(o.id)) is not None
                           and v.frames > 5, timeout=20)  # fmt: skip
        # only the answering doctor invites; the invited expert is told and may then join
        refused = await caller.call("consult-invite", {"consult": consult["id"], "username": "bs.ha"})
        assert not refused["ok"] and refused["error"]["code"] == "forbidden"
        unknown = await answerer.call("consult-invite", {"consult": consult["id"], "username": "khong.co"})
        assert not unknown["ok"] and unknown["error"]["code"] == "unknown-account"
        invited = await answerer.call("consult-invite", {"consult": consult["id"], "username": "bs.ha"})
        assert invited["ok"] and invited["consult"]["invited"] == [{"username": "bs.ha", "name": "BS. Phạm Thu Hà"}]
        await expert_lobby.wait(lambda: bool(expert_lobby.invitations))
        invitation = expert_lobby.invitations[0].payload
        assert invitation["room"] == room and invitation["invitedBy"] == ACCOUNTS["specialist"]["display_name"]
        expert = await join("pediatrician")
        parties.append(expert)
        await wait_for(lambda: expert.id is not None and len(expert.peers) == 2, timeout=10)
        assert expert.errors == []
    finally:
        await asyncio.gather(*(p.leave() for p in parties))
    _, logged = await dispatching.get(f"/api/consults/{consult['id']}", user="admin")
    assert logged["joinedAt"] is not None and logged["endedAt"] is not None
    assert logged["joinedAt"] <= logged["endedAt"]
    kinds = [e["kind"] for e in logged["events"]]
    assert kinds.count("joined") == 3 and kinds.count("left") == 3 and kinds[-1] == "ended" and "invited" in kinds
