"""A media worker process: one ``LocalMediaService`` driven over stdin/stdout, one per core (mediasoup's model).

A Python process saturates its event loop near one core, so rooms are spread across workers. The protocol is
newline-delimited JSON: requests ``{"id", "method", "params"}`` in, replies ``{"id", "result"}`` or
``{"id", "error": {"code", "message"}}`` out, and ``{"notify": [participant, event, payload]}`` for offers and
connection failures that media raises by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from aiortc import RTCIceServer

from . import logs
from .errors import MediaError
from .service import LocalMediaService
from .settings import MediaSettings

logger = logging.getLogger(__name__)

METHODS = ("join", "leave", "restart", "limit", "answer", "offer", "candidate", "start_recording", "stop_recording",
           "link_test_start", "link_test_answer", "link_test_stop")
LINE_LIMIT = 16 * 1024 * 1024


class Worker:
    def __init__(self, writer: asyncio.StreamWriter, media_args: dict[str, Any]) -> None:
        self._writer = writer
        self.media = LocalMediaService(notify=self._notify, **media_args)

    def _send(self, message: dict[str, Any]) -> None:
        self._writer.write(json.dumps(message, separators=(",", ":")).encode() + b"\n")

    async def _notify(self, participant_id: str, event: str, payload: dict[str, Any]) -> None:
        self._send({"notify": [participant_id, event, payload]})

    async def handle(self, request: dict[str, Any]) -> None:
        request_id = request.get("id")
        method = request.get("method")
        try:
            if method == "stats":
                result: Any = self.media.stats()
            elif method in METHODS:
                result = await getattr(self.media, method)(**request.get("params", {}))
            else:
                raise MediaError("internal", f"unknown worker method {method!r}")
            self._send({"id": request_id, "result": result})
        except MediaError as exc:
            self._send({"id": request_id, "error": {"code": exc.code, "message": exc.message}})
        except Exception as exc:
            logger.exception("worker method %s failed", method)
            self._send({"id": request_id, "error": {"code": "internal", "message": str(exc)}})


async def run(media_args: dict[str, Any]) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=LINE_LIMIT)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    transport, protocol = await loop.connect_write_pipe(asyncio.streams.FlowControlMixin, sys.stdout)
    writer = asyncio.StreamWriter(transport, protocol, reader, loop)
    worker = Worker(writer, media_args)
    tasks: set[asyncio.Task[None]] = set()
    while line := await reader.readline():
        task = asyncio.ensure_future(worker.handle(json.loads(line)))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    await worker.media.close()  # signaling went away: end every session


def main() -> None:
    parser = argparse.ArgumentParser(description="Hoichan media worker (started by the server)")
    parser.add_argument("--ice-servers", default="[]", help="JSON list of RTCIceServer dicts")
    parser.add_argument("--address", action="append", default=[], help="host candidate address")
    parser.add_argument("--udp-ports", type=int, nargs=2, default=None, help="UDP port range for media")
    parser.add_argument("--recordings", default=None, help="recording directory")
    parser.add_argument("--settings", default="{}", help="JSON of MediaSettings")
    parser.add_argument("--cpu", type=int, default=None, help="pin this worker to one core")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args()
    logs.setup(args.log_level, os.environ.get(logs.FORMAT_VARIABLE, "text"), f"media-worker[{os.getpid()}]")
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    media_args = {
        "ice_servers": [RTCIceServer(**s) for s in json.loads(args.ice_servers)],
        "host_addresses": args.address,
        "udp_ports": tuple(args.udp_ports) if args.udp_ports else None,
        "recordings": Path(args.recordings) if args.recordings else None,
        "settings": MediaSettings(**json.loads(args.settings)),
    }
    asyncio.run(run(media_args))


if __name__ == "__main__":
    main()
