"""Dispatch: a consult request rings on-duty central doctors, wave after wave, until one accepts.

A consult is ``ringing`` (wave 1..n) → ``answered`` | ``cancelled`` | ``unanswered``. Waves come from the
directory: the hospital the caller chose (if any), then the caller's partners (``partners_per_wave`` at a time, in
the directory's order), then every other central hospital with the specialty. Each wave rings its hospitals'
on-duty, online doctors of the specialty for the urgency's ``ring_seconds``; earlier waves keep ringing, and a wave
with nobody to ring is passed at once (except the last, which waits: somebody may come on duty). When everyone
ringing has declined, the next wave starts at once; when the last wave has rung its time (or everyone in it
declined), the consult is unanswered. A doctor who comes on duty (or online) while a consult is ringing their
hospital is rung at once.

The one decision that races is how a consult ends: two doctors accepting at once, an accept against the caller's
cancel or against the last timeout. It is made in one place, ``Decisions.settle``: the first settlement wins and
every later one learns who won. In one process that is a dict; a cluster swaps in a store with an atomic
set-if-absent (Redis ``SET NX``) without touching the rest.

In a cluster a consult rings from the process it was requested on (its owner); ``Peers`` (``cluster/
dispatch_link.py``) forwards other processes' accepts, declines, cancels and invites to it, and shares the news
every process needs: doctors reachable or off duty, each consult's view, consult rooms' comings and goings.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Any, Literal, Protocol
from zoneinfo import ZoneInfo

from .accounts import AccountStore
from .auth import Identity
from .config import DispatchConfig
from .consult_log import ConsultRecords, Party, stamp
from .directory import Directory
from .presence import Presence

__all__ = [
    "MAX_OPEN_PER_CALLER",
    "ROOM_PREFIX",
    "Consult",
    "Decisions",
    "DispatchError",
    "Dispatcher",
    "LocalDecisions",
    "Settlement",
    "plan_waves",
]

logger = logging.getLogger(__name__)

Urgency = Literal["routine", "urgent", "emergency"]
ROOM_PREFIX = "consult-"
MAX_OPEN_PER_CALLER = 5
"""Consults one doctor may have ringing at once: enough for real work, a bound on a runaway page."""
_KEEP_CLOSED_SECONDS = 600.0  # a closed consult stays in memory this long, so late clicks get a clear answer
_KEEP_ANSWERED_SECONDS = 12 * 3600.0

Send = Callable[[list[str], str, dict[str, Any]], Awaitable[None]]
"""Send an event to every connection of these accounts."""


class DispatchError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Settlement:
    outcome: Literal["answered", "cancelled", "unanswered"]
    by: str | None
    """Who answered (answered) or cancelled (cancelled)."""


class Decisions(Protocol):
    async def settle(self, consult_id: str, settlement: Settlement) -> tuple[Settlement, bool]:
        """Settle a consult once: returns the settlement in force and whether it is this one (first wins)."""

    def forget(self, consult_id: str) -> None: ...


class Peers(Protocol):
    """The other signaling processes of a cluster."""

    async def own(self, consult_id: str, seconds: float) -> None:
        """Note this process as the consult's owner for ``seconds``."""

    async def forward(self, consult_id: str, method: str, params: dict[str, Any]) -> Any:
        """Run ``method`` (``Dispatcher.serve``) on the consult's owner; raises its ``DispatchError``."""

    async def announce(self, message: dict[str, Any]) -> None:
        """Tell every other process (``Dispatcher.hear``)."""


_FORWARDED = ("accept", "decline", "cancel", "invite")


def _identity_data(identity: Identity) -> dict[str, Any]:
    return {**asdict(identity), "specialties": list(identity.specialties)}


def _identity(data: dict[str, Any]) -> Identity:
    return Identity(**{**data, "specialties": tuple(data.get("specialties") or ())})


class LocalDecisions:
    """Decisions of one process: check-and-set in a dict, with no await in between, so it cannot interleave."""

    def __init__(self) -> None:
        self._settled: dict[str, Settlement] = {}

    async def settle(self, consult_id: str, settlement: Settlement) -> tuple[Settlement, bool]:
        current = self._settled.setdefault(consult_id, settlement)
        return current, current is settlement

    def forget(self, consult_id: str) -> None:
        self._settled.pop(consult_id, None)


@dataclass
class Ring:
    identity: Identity
    wave: int
    since: datetime.datetime
    status: Literal["ringing", "declined", "accepted", "stopped", "off-duty"] = "ringing"
    ended: datetime.datetime | None = None

    @property
    def username(self) -> str:
        return self.identity.user_id or ""


@dataclass
class Consult:
    id: str
    caller: Identity
    province: str
    point: str | None
    specialty: str
    urgency: Urgency
    summary: str
    target: str | None
    waves: list[tuple[str, ...]]
    requested_at: datetime.datetime
    requested_mono: float
    state: Literal["ringing", "answered", "cancelled", "unanswered"] = "ringing"
    wave: int = -1
    wave_ends_at: datetime.datetime | None = None
    rings: dict[str, Ring] = field(default_factory=dict)
    answered_by: Identity | None = None
    answered_at: datetime.datetime | None = None
    answer_ms: float | None = None
    closed_at: datetime.datetime | None = None
    invited: dict[str, str] = field(default_factory=dict)  # username → display name
    timer: asyncio.TimerHandle | None = field(default=None, repr=False)

    @property
    def room(self) -> str | None:
        return ROOM_PREFIX + self.id if self.state == "answered" else None

    def reachable_facilities(self) -> set[str]:
        """Facilities of every wave started so far."""
        return {f for wave in self.waves[: self.wave + 1] for f in wave}

    def audience(self) -> list[str]:
        """Everyone who sees this consult live: the caller, every doctor rung, the invited."""
        names = {self.caller.user_id or "", *self.rings, *self.invited}
        return sorted(names)

    def ringing(self) -> list[Ring]:
        return [ring for ring in self.rings.values() if ring.status == "ringing"]


def plan_waves(
    directory: Directory, caller_facility: str, specialty: str, target: str | None, partners_per_wave: int
) -> list[tuple[str, ...]]:
    """The hospitals each wave rings: target, then partners in groups, then every other hospital with the specialty."""
    offering = directory.central_with_specialty(specialty)
    waves: list[tuple[str, ...]] = []
    seen: set[str] = set()
    if target is not None:
        waves.append((target,))
        seen.add(target)
    partners = [p for p in directory.partners_of(caller_facility) if p in offering and p not in seen]
    for start in range(0, len(partners), partners_per_wave):
        waves.append(tuple(partners[start : start + partners_per_wave]))
    seen.update(partners)
    rest = tuple(f for f in offering if f not in seen)
    if rest:
        waves.append(rest)
    return waves


def _party(identity: Identity) -> Party:
    return Party(identity.user_id or "", identity.display_name or identity.user_id or "", identity.facility_id or "")


class Dispatcher:
    def __init__(
        self,
        directory: Callable[[], Directory],
        presence: Presence,
        log: ConsultRecords,
        accounts: AccountStore,
        send: Send,
        config: DispatchConfig,
        decisions: Decisions | None = None,
        peers: Peers | None = None,
    ) -> None:
        self._directory = directory
        self.presence = presence
        self.log = log
        self._accounts = accounts
        self._send = send
        self._config = config
        self._decisions = decisions or LocalDecisions()
        self.consults: dict[str, Consult] = {}
        self._peers = peers
        self.remote: dict[str, dict[str, Any]] = {}
        """Consults owned by other processes, as last announced: ``{"view", "parties", "audience"}``."""
        self._writes: list[Callable[[], None]] = []
        self.timezone = ZoneInfo(config.timezone)

    # -- clocks (wall for the record, monotonic for durations) ------------------------------------------------

    @staticmethod
    def _now() -> tuple[datetime.datetime, float]:
        return datetime.datetime.now(datetime.UTC), time.monotonic()

    @staticmethod
    def _elapsed_ms(consult: Consult, mono: float) -> float:
        return (mono - consult.requested_mono) * 1000

    # -- requests -----------------------------------------------------------------------------------------

    async def request(
        self,
        caller: Identity,
        specialty: str,
        urgency: Urgency,
        summary: str,
        target: str | None,
        point: str | None,
    ) -> dict[str, Any]:
        directory = self._directory()
        facility = directory.facility(caller.facility_id or "")
        if facility is None:
            raise DispatchError("unknown-facility", f"your facility {caller.facility_id!r} is not in the directory")
        if facility.tier == "central":
            raise DispatchError("forbidden", "central hospitals answer consults; provincial, district and commune "
                                "facilities request them")  # fmt: skip
        if directory.specialty(specialty) is None:
            raise DispatchError("unknown-specialty", f"specialty {specialty!r} is not in the directory")
        if target is not None:
            hospital = directory.facility(target)
            if hospital is None:
                raise DispatchError("unknown-facility", f"facility {target!r} is not in the directory")
            if hospital.tier != "central" or specialty not in hospital.specialties:
                raise DispatchError("invalid-target", f"{hospital.name} does not answer consults for {specialty}")
        if point is not None:
            seat = directory.point(point)
            if seat is None:
                raise DispatchError("unknown-point", f"connection point {point!r} is not in the directory")
            if seat.facility != facility.id:
                raise DispatchError("forbidden", f"connection point {point} belongs to another facility")
        waves = plan_waves(directory, facility.id, specialty, target, self._config.partners_per_wave)
        if not waves:
            raise DispatchError("no-specialist", f"no central hospital in the directory answers for {specialty}")
        open_now = sum(1 for c in self.consults.values() if c.caller.user_id == caller.user_id and c.state == "ringing")
        if open_now >= MAX_OPEN_PER_CALLER:
            raise DispatchError("too-many-requests", f"you already have {open_now} consults ringing; cancel one first")
        wall, mono = self._now()
        consult = Consult(
            id=secrets.token_hex(8),
            caller=caller,
            province=facility.province,
            point=point,
            specialty=specialty,
            urgency=urgency,
            summary=summary,
            target=target,
            waves=waves,
            requested_at=wall,
            requested_mono=mono,
        )
        await self.presence.sync()  # a cluster: doctors online on every process can be rung
        if self._peers is not None:
            await self._peers.own(consult.id, _KEEP_ANSWERED_SECONDS)
        self._write(partial(self.log.requested, consult.id, wall, _party(caller), facility.province, point,
                            specialty, urgency, summary, target))  # fmt: skip
        self._start_wave(consult)
        self.consults[consult.id] = consult
        logger.info("consult %s requested by %s (%s, %s): %d waves", consult.id, caller.user_id, specialty, urgency,
                    len(waves))  # fmt: skip
        await self._publish(consult)
        return self.view(consult)

    async def _next_wave(self, consult: Consult) -> None:
        await self._sync_presence()
        self._start_wave(consult)
        await self._publish(consult)

    def _start_wave(self, consult: Consult) -> None:
        """Start the next wave that has somebody to ring (the last one always starts) and its timer."""
        if consult.timer is not None:
            consult.timer.cancel()
        while True:
            consult.wave += 1
            rung = self._ring(consult, consult.waves[consult.wave])
            if rung or consult.wave == len(consult.waves) - 1:
                break
        seconds = getattr(self._config.ring_seconds, consult.urgency)
        wall, _ = self._now()
        consult.wave_ends_at = wall + datetime.timedelta(seconds=seconds)
        wave = consult.wave
        consult.timer = asyncio.get_running_loop().call_later(
            seconds, lambda: asyncio.ensure_future(self._wave_over(consult, wave))
        )

    def _ring(self, consult: Consult, facilities: tuple[str, ...] | set[str], only: Identity | None = None) -> int:
        """Ring every ringable doctor of ``facilities`` not rung yet (or just ``only``); how many were rung."""
        wall, mono = self._now()
        count = 0
        candidates = self.presence.ringable(facilities, consult.specialty)
        for identity in candidates:
            username = identity.user_id or ""
            if username in consult.rings or (only is not None and username != only.user_id):
                continue
            consult.rings[username] = Ring(identity, consult.wave + 1, wall)
            self._write(partial(self.log.event, consult.id, wall, self._elapsed_ms(consult, mono), "ring",
                                _party(identity), f"wave {consult.wave + 1}"))  # fmt: skip
            count += 1
        return count

    async def _wave_over(self, consult: Consult, wave: int) -> None:
        if consult.state != "ringing" or consult.wave != wave:
            return
        if wave == len(consult.waves) - 1:
            await self._close(consult, "unanswered", None)
        else:
            await self._next_wave(consult)

    # -- answers --------------------------------------------------------------------------------------------

    async def _sync_presence(self) -> None:
        """Best effort, for decisions no one waits on (a wave's timer): a stale view beats none."""
        try:
            await self.presence.sync()
        except Exception as exc:  # noqa: BLE001 - Redis unreachable: ring whom this process last knew of
            logger.error("presence not refreshed (%s); ringing whom this process last knew of", exc)

    async def _remote_call(self, method: str, identity: Identity, consult_id: str, *args: str) -> dict[str, Any] | None:
        """A consult owned by another process: ``method`` runs there. None: it is ours (or there are no others)."""
        if self._peers is None or consult_id in self.consults:
            return None
        params = {"identity": _identity_data(identity), "consult": consult_id, "args": list(args)}
        return dict(await self._peers.forward(consult_id, method, params))

    async def serve(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """Another process forwarded a doctor's ``method`` on a consult this process owns."""
        if method not in _FORWARDED:
            raise DispatchError("invalid-payload", f"{method!r} cannot be forwarded")
        consult_id = str(params.get("consult"))
        self._live(consult_id)  # never forwarded again
        handler = getattr(self, method)
        return dict(await handler(_identity(params["identity"]), consult_id, *[str(a) for a in params["args"]]))

    async def hear(self, message: dict[str, Any]) -> None:
        """News from another process."""
        kind = message.get("kind")
        if kind == "reachable":
            await self._reachable(_identity(message["identity"]))
        elif kind == "off-duty":
            wall, mono = self._now()
            await self._off_duty(_identity(message["identity"]), wall, mono)
        elif kind == "consult":
            consult_id = message["view"]["id"]
            self.remote[consult_id] = message
            if message["view"]["state"] != "ringing":
                keep = _KEEP_ANSWERED_SECONDS if message["view"]["state"] == "answered" else _KEEP_CLOSED_SECONDS
                asyncio.get_running_loop().call_later(keep, self.remote.pop, consult_id, None)
        elif kind == "room" and self._owns(message["room"][len(ROOM_PREFIX):]):
            identity, members = _identity(message["identity"]), [_identity(m) for m in message["members"]]
            (self.joined if message["event"] == "joined" else self.left)(message["room"], identity, members)

    def _owns(self, consult_id: str) -> bool:
        return consult_id in self.consults or self.log.parties(consult_id) is not None

    def _live(self, consult_id: str) -> Consult:
        consult = self.consults.get(consult_id)
        if consult is None:
            raise DispatchError("not-found", "no such consult (or it ended long ago)")
        return consult

    async def accept(self, doctor: Identity, consult_id: str) -> dict[str, Any]:
        if (remote := await self._remote_call("accept", doctor, consult_id)) is not None:
            return remote
        consult = self._live(consult_id)
        ring = consult.rings.get(doctor.user_id or "")
        if ring is None:
            raise DispatchError("forbidden", "this consult is not ringing you")
        if consult.state == "ringing" and ring.status != "ringing":
            raise DispatchError("not-ringing", f"you have {ring.status} this call")
        settlement, won = await self._decisions.settle(consult.id, Settlement("answered", doctor.user_id))
        if not won:
            raise self._lost(consult, settlement)
        wall, mono = self._now()
        self._settle_state(consult, "answered", wall)
        ring.status = "accepted"
        consult.answered_by = doctor
        consult.answered_at = wall
        consult.answer_ms = self._elapsed_ms(consult, mono)
        self._write(partial(self.log.answered, consult.id, wall, consult.answer_ms, _party(doctor),
                            consult.room or ""))  # fmt: skip
        self._log_stopped(consult, wall, mono)
        logger.info("consult %s answered by %s after %.0f ms", consult.id, doctor.user_id, consult.answer_ms)
        self._forget_later(consult, _KEEP_ANSWERED_SECONDS)
        await self._publish(consult)
        return self.view(consult)

    def _lost(self, consult: Consult, settlement: Settlement) -> DispatchError:
        if settlement.outcome == "answered":
            winner = consult.answered_by
            name = winner.display_name if winner is not None and winner.user_id == settlement.by else settlement.by
            return DispatchError("already-answered", f"{name} answered this consult first")
        if settlement.outcome == "cancelled":
            return DispatchError("consult-closed", "the caller cancelled this consult")
        return DispatchError("consult-closed", "this consult was not answered in time and has closed")

    async def decline(self, doctor: Identity, consult_id: str) -> dict[str, Any]:
        if (remote := await self._remote_call("decline", doctor, consult_id)) is not None:
            return remote
        consult = self._live(consult_id)
        ring = consult.rings.get(doctor.user_id or "")
        if ring is None:
            raise DispatchError("forbidden", "this consult is not ringing you")
        if consult.state != "ringing" or ring.status != "ringing":
            raise DispatchError("not-ringing", "this call is no longer ringing for you")
        wall, mono = self._now()
        ring.status, ring.ended = "declined", wall
        self._write(partial(self.log.event, consult.id, wall, self._elapsed_ms(consult, mono), "declined",
                            _party(doctor)))  # fmt: skip
        await self._after_ring_ended(consult)
        return self.view(consult)

    async def _after_ring_ended(self, consult: Consult) -> None:
        """Nobody left ringing: move on now instead of waiting for the wave's time."""
        if consult.ringing():
            await self._publish(consult)
        elif consult.wave == len(consult.waves) - 1:
            await self._close(consult, "unanswered", None)
        else:
            await self._next_wave(consult)

    async def cancel(self, caller: Identity, consult_id: str) -> dict[str, Any]:
        if (remote := await self._remote_call("cancel", caller, consult_id)) is not None:
            return remote
        consult = self._live(consult_id)
        if consult.caller.user_id != caller.user_id:
            raise DispatchError("forbidden", "only the doctor who requested a consult can cancel it")
        if consult.state != "ringing":
            raise DispatchError("consult-closed", f"this consult is already {consult.state}")
        settlement, won = await self._close(consult, "cancelled", caller.user_id)
        if not won:
            raise self._lost(consult, settlement)
        return self.view(consult)

    async def _close(
        self, consult: Consult, outcome: Literal["cancelled", "unanswered"], by: str | None
    ) -> tuple[Settlement, bool]:
        settlement, won = await self._decisions.settle(consult.id, Settlement(outcome, by))
        if not won:
            return settlement, False
        wall, mono = self._now()
        self._settle_state(consult, outcome, wall)
        self._write(partial(self.log.closed, consult.id, wall, self._elapsed_ms(consult, mono), outcome))
        self._log_stopped(consult, wall, mono)
        logger.info("consult %s %s", consult.id, outcome)
        self._forget_later(consult, _KEEP_CLOSED_SECONDS)
        await self._publish(consult)
        return settlement, True

    def _settle_state(self, consult: Consult, state: Literal["answered", "cancelled", "unanswered"],
                      wall: datetime.datetime) -> None:  # fmt: skip
        consult.state = state
        consult.closed_at = wall
        consult.wave_ends_at = None
        if consult.timer is not None:
            consult.timer.cancel()
            consult.timer = None

    def _log_stopped(self, consult: Consult, wall: datetime.datetime, mono: float) -> None:
        for ring in consult.ringing():
            ring.status, ring.ended = "stopped", wall
            self._write(partial(self.log.event, consult.id, wall, self._elapsed_ms(consult, mono), "stopped",
                                _party(ring.identity)))

    def _forget_later(self, consult: Consult, seconds: float) -> None:
        def forget() -> None:
            if self.consults.get(consult.id) is consult:
                del self.consults[consult.id]
                self._decisions.forget(consult.id)

        asyncio.get_running_loop().call_later(seconds, forget)

    # -- more experts ---------------------------------------------------------------------------------------

    async def invite(self, doctor: Identity, consult_id: str, username: str) -> dict[str, Any]:
        if (remote := await self._remote_call("invite", doctor, consult_id, username)) is not None:
            return remote
        consult = self._live(consult_id)
        if consult.answered_by is None or consult.answered_by.user_id != doctor.user_id:
            raise DispatchError("forbidden", "only the doctor who answered can invite more experts")
        expert = self._accounts.get(username)
        if expert is None or expert.role != "doctor":
            raise DispatchError("unknown-account", f"no doctor with the username {username!r}")
        if expert.username in (consult.caller.user_id, doctor.user_id) or expert.username in consult.invited:
            raise DispatchError("already-invited", f"{expert.display_name} is already part of this consult")
        wall, mono = self._now()
        consult.invited[expert.username] = expert.display_name
        self._write(partial(self.log.event, consult.id, wall, self._elapsed_ms(consult, mono), "invited",
                            Party(expert.username, expert.display_name, expert.facility_id), f"by {doctor.user_id}"))
        view = self.view(consult)
        await self._send([expert.username], "consult-invited", {**view, "invitedBy": doctor.display_name})
        await self._publish(consult)
        return view

    # -- duty and presence ----------------------------------------------------------------------------------

    async def set_duty(self, doctor: Identity, on: bool) -> None:
        directory = self._directory()
        facility = directory.facility(doctor.facility_id or "")
        if facility is None or facility.tier != "central":
            raise DispatchError("forbidden", "only doctors of central hospitals go on duty to answer consults")
        wall, mono = self._now()
        self.presence.set_duty(doctor.user_id or "", on, wall)
        await self.presence.sync()
        if on:
            await self.reachable(doctor)
            return
        await self._off_duty(doctor, wall, mono)
        if self._peers is not None:
            await self._peers.announce({"kind": "off-duty", "identity": _identity_data(doctor)})

    async def _off_duty(self, doctor: Identity, wall: datetime.datetime, mono: float) -> None:
        """Stop ringing ``doctor`` for this process's consults."""
        for consult in [c for c in self.consults.values() if c.state == "ringing"]:
            ring = consult.rings.get(doctor.user_id or "")
            if ring is not None and ring.status == "ringing":
                ring.status, ring.ended = "off-duty", wall
                self._write(partial(self.log.event, consult.id, wall, self._elapsed_ms(consult, mono), "off-duty",
                                    _party(doctor)))
                await self._after_ring_ended(consult)

    async def reachable(self, doctor: Identity) -> None:
        """A doctor came on duty or online: ring them for every consult already ringing their hospital (on every
        process)."""
        await self._reachable(doctor)
        if self._peers is not None:
            await self._peers.announce({"kind": "reachable", "identity": _identity_data(doctor)})

    async def _reachable(self, doctor: Identity) -> None:
        if not any(c.state == "ringing" for c in self.consults.values()):
            return
        await self._sync_presence()
        rung = [c for c in self.consults.values()
                if c.state == "ringing" and self._ring(c, c.reachable_facilities(), only=doctor)]  # fmt: skip
        for consult in rung:
            await self._publish(consult)

    def active_for(self, username: str) -> list[dict[str, Any]]:
        """What a lobby page shows on (re)connecting: consults this account requested, is rung for or invited to
        (a cluster: those of other processes too, as last announced)."""
        remote = [r["view"] for r in self.remote.values() if username in r["audience"]]
        return [self.view(c) for c in self.consults.values() if username in c.audience()] + remote

    # -- rooms ----------------------------------------------------------------------------------------------

    def admit(self, identity: Identity, room_id: str) -> None:
        """Consult rooms admit only the consult's caller, answerer and invited experts (after it was answered)."""
        if not room_id.startswith(ROOM_PREFIX):
            return
        consult_id = room_id[len(ROOM_PREFIX) :]
        consult = self.consults.get(consult_id)
        parties = self._parties(consult) if consult is not None else self.log.parties(consult_id)
        if parties is None and consult_id in self.remote:  # a cluster: owned by another process
            parties = self.remote[consult_id]["parties"]
        if parties is None or "answerer" not in parties.values():
            raise DispatchError("not-found", "there is no consult room with this id")
        if identity.user_id not in parties:
            raise DispatchError("forbidden", "only the consult's doctors and invited experts may join this room")

    @staticmethod
    def _parties(consult: Consult) -> dict[str, str]:
        """The log's ``parties`` of a consult still in memory (its last writes may not be flushed yet)."""
        out = {consult.caller.user_id or "": "caller"}
        if consult.answered_by is not None:
            out.setdefault(consult.answered_by.user_id or "", "answerer")
        for username in consult.invited:
            out.setdefault(username, "invited")
        return out

    def _elsewhere(self, event: str, room_id: str, identity: Identity, members: list[Identity]) -> bool:
        """A consult room whose consult another process owns: its log is written there."""
        if self._peers is None or self._owns(room_id[len(ROOM_PREFIX) :]):
            return False
        message = {"kind": "room", "event": event, "room": room_id, "identity": _identity_data(identity),
                   "members": [_identity_data(m) for m in members]}
        asyncio.ensure_future(self._peers.announce(message))
        return True

    def joined(self, room_id: str, identity: Identity, members: list[Identity]) -> None:
        if not room_id.startswith(ROOM_PREFIX) or self._elsewhere("joined", room_id, identity, members):
            return
        consult_id = room_id[len(ROOM_PREFIX) :]
        wall, mono = self._now()
        self.log.event(consult_id, wall, self._elapsed_or_none(consult_id, mono), "joined", _party(identity))
        consult = self.consults.get(consult_id)
        parties = (self._parties(consult) if consult is not None else self.log.parties(consult_id)) or {}
        present = {m.user_id for m in members}
        if all(name in present for name, role in parties.items() if role in ("caller", "answerer")):
            self.log.mark(consult_id, "joined_at", wall)

    def left(self, room_id: str, identity: Identity, members: list[Identity]) -> None:
        if not room_id.startswith(ROOM_PREFIX) or self._elsewhere("left", room_id, identity, members):
            return
        consult_id = room_id[len(ROOM_PREFIX) :]
        wall, mono = self._now()
        elapsed = self._elapsed_or_none(consult_id, mono)
        self.log.event(consult_id, wall, elapsed, "left", _party(identity))
        if not members and self.log.mark(consult_id, "ended_at", wall):
            self.log.event(consult_id, wall, elapsed, "ended")
            consult = self.consults.get(consult_id)
            if consult is not None:
                self._forget_later(consult, 60.0)

    def _elapsed_or_none(self, consult_id: str, mono: float) -> float | None:
        consult = self.consults.get(consult_id)
        return self._elapsed_ms(consult, mono) if consult is not None else None

    # -- what pages see -------------------------------------------------------------------------------------

    def view(self, consult: Consult) -> dict[str, Any]:
        directory = self._directory()

        def facility_name(facility_id: str | None) -> str | None:
            facility = directory.facility(facility_id or "")
            return facility.name if facility is not None else facility_id

        answered = consult.answered_by
        return {
            "id": consult.id,
            "state": consult.state,
            "specialty": consult.specialty,
            "urgency": consult.urgency,
            "summary": consult.summary,
            "caller": {
                "username": consult.caller.user_id,
                "name": consult.caller.display_name,
                "facility": consult.caller.facility_id,
                "facilityName": facility_name(consult.caller.facility_id),
                "province": consult.province,
            },
            "point": consult.point,
            "target": consult.target,
            "wave": consult.wave + 1,
            "waves": len(consult.waves),
            "requestedAt": stamp(consult.requested_at),
            "waveEndsAt": stamp(consult.wave_ends_at) if consult.wave_ends_at else None,
            "rings": [
                {
                    "username": ring.username,
                    "name": ring.identity.display_name,
                    "facility": ring.identity.facility_id,
                    "facilityName": facility_name(ring.identity.facility_id),
                    "wave": ring.wave,
                    "since": stamp(ring.since),
                    "status": ring.status,
                    "endedAt": stamp(ring.ended) if ring.ended else None,
                }
                for ring in consult.rings.values()
            ],
            "answeredBy": {
                "username": answered.user_id,
                "name": answered.display_name,
                "facility": answered.facility_id,
                "facilityName": facility_name(answered.facility_id),
            } if answered else None,
            "answeredAt": stamp(consult.answered_at) if consult.answered_at else None,
            "answerSeconds": round(consult.answer_ms / 1000, 3) if consult.answer_ms is not None else None,
            "closedAt": stamp(consult.closed_at) if consult.closed_at else None,
            "room": consult.room,
            "invited": [{"username": u, "name": n} for u, n in consult.invited.items()],
            "now": stamp(datetime.datetime.now(datetime.UTC)),
        }  # fmt: skip

    async def _publish(self, consult: Consult) -> None:
        """Tell everyone concerned, then write what changed to the log (one transaction).

        The log is written right after the packets are handed to the sockets, so the ring's latency does not
        include a disk sync (2 ms typical, 15 ms and more when the disk is busy); a crash inside those few
        milliseconds can lose the step that was being written, never an earlier one.
        """
        view = self.view(consult)
        await self._send(consult.audience(), "consult-state", view)
        if self._peers is not None:
            await self._peers.announce({"kind": "consult", "view": view, "parties": self._parties(consult),
                                        "audience": consult.audience()})
        self._flush()

    def _write(self, write: Callable[[], None]) -> None:
        self._writes.append(write)

    def _flush(self) -> None:
        writes, self._writes = self._writes, []
        if writes:
            with self.log.batch():
                for write in writes:
                    write()
