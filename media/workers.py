"""Media worker processes behind the ``MediaService`` interface: rooms placed on the least-loaded worker.

Signaling talks to this pool exactly as to an in-process ``LocalMediaService``. A worker that dies is started
again; its participants are told their media failed, and their ``restart`` joins them on the new process.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import MediaError
from .router import Notify
from .settings import MediaSettings
from .worker import LINE_LIMIT

logger = logging.getLogger(__name__)


@dataclass
class _Worker:
    index: int
    process: asyncio.subprocess.Process
    generation: int
    pending: dict[int, asyncio.Future[Any]] = field(default_factory=dict)
    rooms: dict[str, set[str]] = field(default_factory=dict)
    link_tests: set[str] = field(default_factory=set)
    reader: asyncio.Task[None] | None = None

    @property
    def participants(self) -> int:
        return sum(len(members) for members in self.rooms.values())


class WorkerPool:
    def __init__(
        self,
        count: int,
        notify: Notify,
        ice_servers: list[dict[str, Any]],
        host_addresses: list[str],
        udp_ports: tuple[int, int] | None,
        pin: bool,
        recordings: Path | None = None,
        log_level: str = "INFO",
        settings: MediaSettings = MediaSettings(),
    ) -> None:
        self._count = count
        self._notify = notify
        self._args = ["--ice-servers", json.dumps(ice_servers), "--log-level", log_level,
                      "--settings", json.dumps(settings.as_dict())]
        for address in host_addresses:
            self._args += ["--address", address]
        if udp_ports is not None:
            self._args += ["--udp-ports", str(udp_ports[0]), str(udp_ports[1])]
        if recordings is not None:
            self._args += ["--recordings", str(recordings)]
        self._pin = pin
        self._workers: list[_Worker] = []
        self._ids = itertools.count()
        self._placement: dict[str, tuple[_Worker, int, str]] = {}  # participant -> (worker, generation, room)
        self._info: dict[str, dict[str, Any]] = {}  # what a replacement worker needs to re-join them
        self._closing = False

    async def start(self) -> None:
        self._workers = [await self._spawn(i, 0) for i in range(self._count)]

    async def _spawn(self, index: int, generation: int) -> _Worker:
        args = list(self._args)
        if self._pin:
            cores = sorted(os.sched_getaffinity(0))
            args += ["--cpu", str(cores[index % len(cores)])]
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "media.worker", *args,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, limit=LINE_LIMIT,
        )
        worker = _Worker(index, process, generation)
        worker.reader = asyncio.ensure_future(self._read(worker))
        return worker

    async def _read(self, worker: _Worker) -> None:
        assert worker.process.stdout is not None
        while line := await worker.process.stdout.readline():
            message = json.loads(line)
            if "notify" in message:
                test_id, event, _ = message["notify"]
                if event == "linktest-measured":
                    worker.link_tests.discard(test_id)
                asyncio.ensure_future(self._notify(*message["notify"]))
                continue
            future = worker.pending.pop(message["id"], None)
            if future is None or future.done():
                continue
            if "error" in message:
                future.set_exception(MediaError(message["error"]["code"], message["error"]["message"]))
            else:
                future.set_result(message.get("result"))
        await self._lost(worker)

    async def _lost(self, worker: _Worker) -> None:
        """A worker exited: fail its calls, start a replacement, tell its participants to reconnect."""
        for future in worker.pending.values():
            if not future.done():
                future.set_exception(MediaError("internal", "media worker stopped"))
        if self._closing:
            return
        logger.error("media worker %d exited (%s); starting a new one", worker.index, worker.process.returncode)
        for test_id in worker.link_tests:  # their peer connections died with the process: a partial result
            asyncio.ensure_future(self._notify(test_id, "linktest-measured", {
                "status": "partial", "stoppedIn": None, "stopReason": "media-stopped", "paths": [],
            }))
        worker.link_tests.clear()
        self._workers[worker.index] = replacement = await self._spawn(worker.index, worker.generation + 1)
        for room_id, members in worker.rooms.items():
            replacement.rooms[room_id] = set()
            for participant_id in members:
                self._placement[participant_id] = (replacement, -1, room_id)  # -1: not joined on this process
                asyncio.ensure_future(self._notify(participant_id, "media-failed", {}))

    async def _call(self, worker: _Worker, method: str, **params: Any) -> Any:
        if worker.process.returncode is not None or worker.process.stdin is None:
            raise MediaError("internal", "media worker is restarting; try again")
        request_id = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        worker.pending[request_id] = future
        line = json.dumps({"id": request_id, "method": method, "params": params}, separators=(",", ":"))
        worker.process.stdin.write(line.encode() + b"\n")
        await worker.process.stdin.drain()
        return await future

    def _worker_of(self, participant_id: str) -> _Worker:
        placed = self._placement.get(participant_id)
        if placed is None:
            raise MediaError("not-joined", "join a room first")
        return placed[0]

    def _place(self, room_id: str) -> _Worker:
        for worker in self._workers:
            if room_id in worker.rooms:
                return worker
        return min(self._workers, key=lambda w: (w.participants, w.index))

    async def prepare(self, room_id: str) -> None:
        """A dead worker is replaced at once: the pool can always take a room."""

    async def join(self, room_id: str, participant_id: str, info: dict[str, Any] | None = None) -> None:
        worker = self._place(room_id)
        worker.rooms.setdefault(room_id, set()).add(participant_id)
        self._placement[participant_id] = (worker, worker.generation, room_id)
        self._info[participant_id] = info or {}
        await self._call(worker, "join", room_id=room_id, participant_id=participant_id, info=info)

    async def start_recording(self, room_id: str, meta: dict[str, Any]) -> str:
        return str(await self._call(self._place(room_id), "start_recording", room_id=room_id, meta=meta))

    async def stop_recording(self, room_id: str) -> None:
        await self._call(self._place(room_id), "stop_recording", room_id=room_id)

    async def leave(self, participant_id: str) -> None:
        placed = self._placement.pop(participant_id, None)
        self._info.pop(participant_id, None)
        if placed is None:
            return
        worker, generation, room_id = placed
        members = worker.rooms.get(room_id, set())
        members.discard(participant_id)
        if not members:
            worker.rooms.pop(room_id, None)
        if generation == worker.generation:
            await self._call(worker, "leave", participant_id=participant_id)

    async def restart(self, participant_id: str) -> None:
        worker, generation, room_id = self._placement.get(participant_id) or (None, 0, "")
        if worker is None:
            raise MediaError("not-joined", "join a room first")
        if generation != worker.generation:  # its worker was replaced: join the new one
            self._placement[participant_id] = (worker, worker.generation, room_id)
            worker.rooms.setdefault(room_id, set()).add(participant_id)
            await self._call(worker, "join", room_id=room_id, participant_id=participant_id,
                             info=self._info.get(participant_id))
            return
        await self._call(worker, "restart", participant_id=participant_id)

    async def limit(self, participant_id: str, limits: dict[str, Any]) -> None:
        self._info.setdefault(participant_id, {})["limits"] = limits  # a replacement worker re-joins with them
        placed = self._placement.get(participant_id)
        if placed is None:
            raise MediaError("not-joined", "join a room first")
        worker, generation, _ = placed
        if generation == worker.generation:  # else its restart joins the new worker with them
            await self._call(worker, "limit", participant_id=participant_id, limits=limits)

    async def answer(self, participant_id: str, sdp: str) -> None:
        await self._call(self._worker_of(participant_id), "answer", participant_id=participant_id, sdp=sdp)

    async def offer(self, participant_id: str, sdp: str) -> str:
        return str(await self._call(self._worker_of(participant_id), "offer", participant_id=participant_id, sdp=sdp))

    async def candidate(
        self, participant_id: str, candidate: str, sdp_mid: str | None, sdp_mline_index: int | None
    ) -> None:
        await self._call(
            self._worker_of(participant_id), "candidate", participant_id=participant_id,
            candidate=candidate, sdp_mid=sdp_mid, sdp_mline_index=sdp_mline_index,
        )

    async def link_test_start(self, test_id: str, plan: dict[str, Any]) -> list[dict[str, str]]:
        """On the worker with the fewest participants (a test floods a few Mbit/s for a few seconds)."""
        worker = min(self._workers, key=lambda w: (w.participants + 4 * len(w.link_tests), w.index))
        worker.link_tests.add(test_id)
        try:
            return list(await self._call(worker, "link_test_start", test_id=test_id, plan=plan))
        except MediaError:
            worker.link_tests.discard(test_id)
            raise

    def _worker_of_test(self, test_id: str) -> _Worker:
        for worker in self._workers:
            if test_id in worker.link_tests:
                return worker
        raise MediaError("not-found", f"no link test {test_id} is running")

    async def link_test_answer(self, test_id: str, path: str, sdp: str) -> None:
        await self._call(self._worker_of_test(test_id), "link_test_answer", test_id=test_id, path=path, sdp=sdp)

    async def link_test_stop(self, test_id: str, reason: str) -> None:
        try:
            worker = self._worker_of_test(test_id)
        except MediaError:
            return
        await self._call(worker, "link_test_stop", test_id=test_id, reason=reason)

    def stats(self) -> dict[str, Any]:
        rooms = [len(m) for w in self._workers for m in w.rooms.values()]
        return {
            "rooms": len(rooms),
            "participants": sum(rooms),
            "forwarded_streams": sum(2 * n * (n - 1) for n in rooms),
            "link_tests": sum(len(w.link_tests) for w in self._workers),
            "workers": [{"pid": w.process.pid, "participants": w.participants} for w in self._workers],
        }

    async def close(self) -> None:
        self._closing = True
        for worker in self._workers:
            if worker.process.stdin is not None:
                worker.process.stdin.close()
        for worker in self._workers:
            try:
                await asyncio.wait_for(worker.process.wait(), 5)
            except TimeoutError:
                worker.process.kill()
