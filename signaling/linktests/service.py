"""Link tests of connection points: who may start one, how often, and what becomes of its result.

A technician or doctor of the point's facility (or an admin) starts a test over socket.io; media runs it
(``media/linktest.py``) and measures everything itself, so the only result that exists for a point is one the
server measured on a test that someone allowed to test that point started: there is nothing to submit. A point
starts at most one test per ``linktest.min_interval_seconds`` (tests flood the link), at most
``linktest.max_concurrent`` run at once, and a test whose client goes away ends at once with a partial verdict.
Each result, partial ones included, is kept in the point's history (``history.py``).

Events (docs/protocol.md): ``linktest-start`` {point} → ack {testId, seconds, paths: [{path, sdp, iceServers,
iceTransportPolicy}], notTested}; ``linktest-answer`` {testId, path, sdp}; ``linktest-cancel`` {testId}; from the
server ``linktest-progress`` {testId, phase, progress} and ``linktest-result`` {testId, result}.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from media.linktest import LinkTestPlan
from media.service import MediaService

from .. import schemas
from ..config import Config
from ..directory import ConnectionPoint, DirectorySource
from ..events import SignalingError, SignalingEvents
from ..turn import ice_servers_by_path
from .history import LinkTestRecords
from .verdict import PATH_NAMES, VerdictContext, verdict

__all__ = ["LINKTEST_ROLES", "LinkTests", "may_test"]

logger = logging.getLogger(__name__)

LINKTEST_ROLES: frozenset[str] = frozenset({"doctor", "technician", "admin"})
RESULT_GRACE = 10.0  # seconds media gets to report after being told to stop


def may_test(role: str, facility_id: str | None, point: ConnectionPoint) -> bool:
    """Admins test any point; technicians and doctors the points of their own facility."""
    return role == "admin" or (role in LINKTEST_ROLES and facility_id == point.facility)


@dataclass
class _Running:
    id: str
    point: ConnectionPoint
    sid: str
    user: str
    started_at: float
    not_tested: list[dict[str, Any]]
    timer: asyncio.TimerHandle | None = None
    answered: set[str] = field(default_factory=set)


class LinkTests:
    def __init__(self, events: SignalingEvents, media: MediaService, history: LinkTestRecords,
                 directory: DirectorySource, config: Config) -> None:
        self.events = events
        self.media = media
        self.history = history
        self.directory = directory
        self.config = config
        self.running: dict[str, _Running] = {}
        self._last_start: dict[str, float] = {}
        ports = config.media
        self._context = VerdictContext(
            udp_ports=(ports.udp_port_min, ports.udp_port_max)
            if ports.udp_port_min is not None and ports.udp_port_max is not None else None,
            turn_configured=bool(config.turn.urls),
        )
        events.add_event("linktest-start", schemas.LinkTestStart, self.on_start, roles=LINKTEST_ROLES,
                         needs_participant=False)
        events.add_event("linktest-answer", schemas.LinkTestAnswer, self.on_answer, roles=LINKTEST_ROLES,
                         needs_participant=False)
        events.add_event("linktest-cancel", schemas.LinkTestCancel, self.on_cancel, roles=LINKTEST_ROLES,
                         needs_participant=False)
        events.disconnect_hooks.append(self._on_disconnect)

    def plan(self, paths: list[str]) -> LinkTestPlan:
        c = self.config.linktest
        return LinkTestPlan(
            paths=tuple(paths), connect_timeout=c.connect_timeout_seconds, ping_seconds=c.ping_seconds,
            ping_interval=c.ping_interval_ms / 1000, step_seconds=c.step_seconds, max_kbps=c.max_kbps,
            ramp_seconds=c.ramp_seconds, loss_seconds=c.loss_seconds,
        )

    # -- events -------------------------------------------------------------------------------------------

    async def on_start(self, sid: str, message: schemas.LinkTestStart) -> dict[str, Any]:
        identity = self.events.identity(sid)
        assert identity is not None and identity.user_id is not None  # dispatch checked the role
        point = self.directory.current.point(message.point)
        if point is None:
            raise SignalingError("not-found", f"no connection point {message.point!r} in the directory")
        if not may_test(identity.role, identity.facility_id, point):
            raise SignalingError("forbidden", f"only staff of {point.facility} (or an admin) may test this point")
        now = time.time()
        if any(r.point.id == point.id for r in self.running.values()):
            raise SignalingError("busy", "a test of this point is already running")
        last = max(self._last_start.get(point.id, 0.0), self.history.last_start(point.id) or 0.0)
        wait = last + self.config.linktest.min_interval_seconds - now
        if wait > 0:
            raise SignalingError("rate-limited", f"this point was tested moments ago; try again in {wait:.0f} s")
        if len(self.running) >= self.config.linktest.max_concurrent:
            raise SignalingError("busy", "the server is running other link tests; try again in a minute")

        turn = ice_servers_by_path(self.config.turn, identity.user_id)
        paths = ["udp", *(p for p in ("turn-udp", "turn-tcp", "turn-tls") if p in turn)]
        not_tested = [{"path": "tcp", "ok": None, "status": "not-supported"}]
        not_tested += [{"path": p, "ok": None, "status": "not-configured"}
                       for p in ("turn-udp", "turn-tcp", "turn-tls") if p not in turn]
        test_id = uuid.uuid4().hex
        plan = self.plan(paths)
        running = _Running(test_id, point, sid, identity.user_id, now, not_tested)
        self.running[test_id] = running
        self._last_start[point.id] = now
        try:
            offers = await self.media.link_test_start(test_id, plan.as_dict())
        except Exception:
            self.running.pop(test_id, None)
            raise
        loop = asyncio.get_running_loop()
        budget = plan.connect_timeout + plan.expected_seconds + 30
        running.timer = loop.call_later(budget, lambda: asyncio.ensure_future(self._overdue(test_id)))
        logger.info("link test %s of point %s started by %s", test_id, point.id, identity.user_id)
        return {
            "ok": True,
            "testId": test_id,
            "seconds": round(plan.expected_seconds),
            "paths": [
                {"path": o["path"], "sdp": o["sdp"],
                 "iceServers": [turn[o["path"]]] if o["path"] in turn else [],
                 "iceTransportPolicy": "relay" if o["path"] in turn else "all"}
                for o in offers
            ],
            "notTested": not_tested,
        }

    def _own(self, sid: str, test_id: str) -> _Running:
        running = self.running.get(test_id)
        if running is None or running.sid != sid:  # someone else's test looks the same as none
            raise SignalingError("not-found", "no such link test is running on this connection")
        return running

    async def on_answer(self, sid: str, message: schemas.LinkTestAnswer) -> dict[str, Any]:
        running = self._own(sid, message.testId)
        await self.media.link_test_answer(running.id, message.path, message.sdp)
        running.answered.add(message.path)
        return {"ok": True}

    async def on_cancel(self, sid: str, message: schemas.LinkTestCancel) -> dict[str, Any]:
        running = self._own(sid, message.testId)
        await self.media.link_test_stop(running.id, "cancelled")
        return {"ok": True}

    async def _on_disconnect(self, sid: str) -> None:
        for running in [r for r in self.running.values() if r.sid == sid]:
            await self.media.link_test_stop(running.id, "client-left")

    async def _overdue(self, test_id: str) -> None:
        """Media never reported: stop it, and if it stays silent record a partial result ourselves."""
        if test_id not in self.running:
            return
        await self.media.link_test_stop(test_id, "timeout")
        await asyncio.sleep(RESULT_GRACE)
        if test_id in self.running:
            await self._finish(test_id, {"status": "partial", "stoppedIn": None, "stopReason": "timeout",
                                         "paths": []})

    # -- from media ---------------------------------------------------------------------------------------

    async def on_media(self, test_id: str, event: str, payload: dict[str, Any]) -> None:
        """``linktest-progress`` and ``linktest-measured`` from the test's media peer."""
        running = self.running.get(test_id)
        if running is None:
            return
        if event == "linktest-progress":
            if self.events.identity(running.sid) is not None:
                await self.events.sio.emit("linktest-progress", {"testId": test_id, **payload}, to=running.sid)
        elif event == "linktest-measured":
            await self._finish(test_id, payload)

    async def _finish(self, test_id: str, measured: dict[str, Any]) -> None:
        running = self.running.pop(test_id, None)
        if running is None:
            return
        if running.timer is not None:
            running.timer.cancel()
        result = self.result(running, measured)
        try:
            self.history.add(result)
        except Exception:
            logger.exception("link test %s could not be stored", test_id)
        logger.info("link test %s of point %s: %s, %s", test_id, running.point.id, result["status"],
                    result["verdict"]["tier"])
        if self.events.identity(running.sid) is not None:
            await self.events.sio.emit("linktest-result", {"testId": test_id, "result": result}, to=running.sid)

    def result(self, running: _Running, measured: dict[str, Any]) -> dict[str, Any]:
        """The stored form of a test: who, which point, when, what was measured and the verdict."""
        status = "rejected" if measured.get("forged") else measured.get("status", "partial")
        paths = [{**p, "status": p.get("status") or ("ok" if p.get("ok") else p.get("error", "failed"))}
                 for p in measured.get("paths", [])]
        paths += running.not_tested
        for p in paths:
            p["name"] = dict(zip(("vi", "en"), PATH_NAMES[p["path"]], strict=True))
        down, up = measured.get("down") or {}, measured.get("up") or {}
        return {
            "id": running.id,
            "pointId": running.point.id,
            "pointLabel": running.point.label,
            "facilityId": running.point.facility,
            "startedBy": running.user,
            "startedAt": running.started_at,
            "finishedAt": time.time(),
            "status": status,
            "stoppedIn": measured.get("stoppedIn"),
            "stopReason": measured.get("stopReason"),
            "paths": paths,
            "measuredOn": measured.get("measuredOn"),
            "rttMs": measured.get("rttMs"),
            "jitterMs": measured.get("jitterMs"),
            "loss": measured.get("loss"),
            "lossDown": measured.get("lossDown"),
            "lossUp": measured.get("lossUp"),
            "downKbps": down.get("kbps"),
            "upKbps": up.get("kbps"),
            "downAtLeast": bool(down) and not down.get("saturated"),
            "upAtLeast": bool(up) and not up.get("saturated"),
            "details": {"pings": measured.get("pings"), "downSteps": down.get("steps", []),
                        "upSteps": up.get("steps", []), "phaseSeconds": measured.get("phaseSeconds", {})},
            "verdict": verdict(measured, self._context),
        }
