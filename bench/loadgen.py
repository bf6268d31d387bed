"""The load generator: publishers and receive-only subscribers as aiortc participants, in their own process.

Run by ``relay.py`` as ``python bench/loadgen.py``; it talks JSON lines: reads ``{"url", "rooms": [[room,
subscribers], ...]}``, joins everyone, prints ``{"ready": ...}`` once every subscriber has video; reads ``{"t0",
"t1"}`` (``time.monotonic()`` instants, which are system-wide on Linux) and prints what arrived in that window;
then, if asked ``{"leave": true}``, ends every room (its publisher leaves last) and prints when each room's last
leave was sent and acknowledged.

Nothing here decodes: the shared cores belong to the relay. Subscribers count complete frames at the RTP level
on tapped receivers, and a frame is recognised across the relay by a hash of its first packet's payload, which
the relay never changes.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import zlib
from typing import Any

from aiortc import RTCPeerConnection
from aiortc.rtp import RtpPacket

from clip import AUDIO_FILE, VIDEO_FILE, audio_track, load_packets, video_track
from client.participant import Participant
from media import hooks

LAG_INTERVAL = 0.05


def is_frame_start(payload: bytes) -> bool:
    """First packet of a VP8 frame: payload descriptor with S set and partition 0."""
    return bool(payload) and payload[0] & 0x1F == 0x10


def rtp_payload(data: bytes) -> bytes:
    """The payload of a serialized RTP packet (aiortc's sender adds no padding)."""
    offset = 12 + 4 * (data[0] & 0x0F)
    if data[0] & 0x10:
        offset += 4 + 4 * int.from_bytes(data[offset + 2:offset + 4], "big")
    return data[offset:]


class Window:
    """The measurement window, shared by every counter of this process."""

    t0 = float("inf")
    t1 = float("inf")

    @classmethod
    def contains(cls, now: float) -> bool:
        return cls.t0 <= now < cls.t1


class Publisher(Participant):
    """Publishes the clip and records when the first packet of each video frame leaves."""

    def __init__(self, url: str, room: str, video: list[bytes], audio: list[bytes]) -> None:
        self.video = video_track(video)
        super().__init__(url, room, "pub", tracks=[self.video, audio_track(audio)], consume=False)
        self.sent: dict[int, float] = {}  # frame hash -> time.monotonic() when sent
        self._hooked = False

    async def _on_offer(self, data: dict[str, Any]) -> None:
        await super()._on_offer(data)
        if not self._hooked and self.pc is not None:
            self._hook_send(self.pc)

    def _hook_send(self, pc: RTCPeerConnection) -> None:
        """Wrap the (bundled) DTLS transport's RTP send: this is after packetizing, before SRTP."""
        sender = next(t.sender for t in pc.getTransceivers() if t.sender.track is self.video)
        transport = sender.transport
        send, ssrc, sent = transport._send_rtp, sender._ssrc, self.sent

        async def send_and_record(data: bytes) -> None:
            if int.from_bytes(data[8:12], "big") == ssrc:
                payload = rtp_payload(data)
                if is_frame_start(payload):
                    sent[zlib.crc32(payload)] = time.monotonic()
            await send(data)

        transport._send_rtp = send_and_record  # type: ignore[method-assign]
        self._hooked = True


class Stream:
    """One forwarded video stream as one subscriber sees it: complete frames, and each frame's latency."""

    def __init__(self, sent: dict[int, float]) -> None:
        self.frames = 0  # completed in the window
        self.started = False
        self.latencies: list[float] = []
        self._sent = sent
        # RTP timestamp -> (sequence numbers seen, [first packet's, marker packet's]). A frame counts once all
        # its packets are in, RTX repairs included: counting marker bits alone would hide losses.
        self._pending: dict[int, tuple[set[int], list[int]]] = {}

    async def on_packet(self, packet: RtpPacket) -> None:
        now = time.monotonic()
        self.started = True
        if not Window.contains(now):
            return
        entry = self._pending.get(packet.timestamp)
        if entry is None:
            entry = self._pending[packet.timestamp] = (set(), [-1, -1])
            if len(self._pending) > 64:  # ~2 s of frames that will never complete
                del self._pending[next(iter(self._pending))]
        seen, ends = entry
        if packet.sequence_number in seen:
            return  # a retransmission of something that had arrived
        seen.add(packet.sequence_number)
        if is_frame_start(packet.payload):
            ends[0] = packet.sequence_number
            sent = self._sent.get(zlib.crc32(packet.payload))
            if sent is not None:
                self.latencies.append(now - sent)
        if packet.marker:
            ends[1] = packet.sequence_number
        if ends[0] >= 0 and ends[1] >= 0 and len(seen) == ((ends[1] - ends[0]) & 0xFFFF) + 1:
            self.frames += 1
            del self._pending[packet.timestamp]


async def _ignore(packet: RtpPacket) -> None:
    pass


class Subscriber(Participant):
    """Receive-only; every receiver is tapped, so nothing is depacketized or decoded."""

    def __init__(self, url: str, room: str, name: str, publisher: Publisher) -> None:
        super().__init__(url, room, name, consume=False)
        self.publisher = publisher
        self.stream = Stream(publisher.sent)

    def _new_pc(self) -> RTCPeerConnection:
        pc = super()._new_pc()

        @pc.on("track")
        def tap(track: Any) -> None:
            transceiver = next(t for t in pc.getTransceivers() if t.receiver.track is track)
            info = self._track_map.get(transceiver.mid or "", {})
            wanted = info.get("kind") == "video" and info.get("participantId") == self.publisher.id
            hooks.tap_receiver(transceiver.receiver, self.stream.on_packet if wanted else _ignore)

        return pc


async def lag_monitor(samples: list[float]) -> None:
    """How late this process's event loop wakes up: the load generator's own saturation signal."""
    while True:
        before = time.monotonic()
        await asyncio.sleep(LAG_INTERVAL)
        now = time.monotonic()
        if Window.contains(now):
            samples.append(now - before - LAG_INTERVAL)


async def fill_room(
    url: str, room: str, subscribers: int, video: list[bytes], audio: list[bytes]
) -> tuple[Publisher, list[Subscriber]]:
    publisher = Publisher(url, room, video, audio)
    await publisher.join(timeout=30)
    subs = [Subscriber(url, room, f"sub{i}", publisher) for i in range(subscribers)]
    for sub in subs:  # one at a time: each join renegotiates the whole room
        await sub.join(timeout=30)
    return publisher, subs


async def end_room(publisher: Publisher, subscribers: list[Subscriber]) -> tuple[str, list[float]]:
    """Everyone leaves, the publisher last (its tracks are recorded to the end); returns the room and when that
    last leave was sent and acknowledged."""
    for sub in subscribers:
        await sub.leave()
    sent = time.monotonic()
    ack = await publisher.sio.call("leave", {}, timeout=30)
    acknowledged = time.monotonic()
    if not ack.get("ok"):
        raise RuntimeError(f"leave refused: {ack}")
    await publisher.sio.disconnect()
    await publisher.close_media()
    return publisher.room, [sent, acknowledged]


async def read_line() -> dict[str, Any]:
    line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    if not line:
        raise SystemExit(0)  # the orchestrator is gone
    return dict(json.loads(line))


def write_line(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


async def main() -> None:
    hooks.restrict_host_addresses(["127.0.0.1"])  # aioice leaves loopback out otherwise
    config = await read_line()
    video, audio = load_packets(VIDEO_FILE), load_packets(AUDIO_FILE)
    rooms = await asyncio.gather(*(fill_room(config["url"], room, n, video, audio) for room, n in config["rooms"]))
    subscribers = [s for _, room in rooms for s in room]
    deadline = time.monotonic() + config["ready_timeout"]
    while not all(s.stream.started for s in subscribers) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    write_line({"ready": sum(s.stream.started for s in subscribers)})
    window = await read_line()
    Window.t0, Window.t1 = window["t0"], window["t1"]
    lags: list[float] = []
    monitor = asyncio.ensure_future(lag_monitor(lags))
    await asyncio.sleep(max(0.0, Window.t1 - time.monotonic()))
    monitor.cancel()
    seconds = Window.t1 - Window.t0
    write_line({
        "fps": [s.stream.frames / seconds for s in subscribers],
        "latencies": [x for s in subscribers for x in s.stream.latencies],
        "lag": sorted(lags),
    })
    if (await read_line()).get("leave"):
        write_line({"left": dict(await asyncio.gather(*(end_room(p, subs) for p, subs in rooms)))})


if __name__ == "__main__":
    asyncio.run(main())
