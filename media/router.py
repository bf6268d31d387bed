"""A room's media (mediasoup's Router): each member's producers, and one consumer of each on every other member."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiortc import RTCConfiguration

from .downlink import Downlink, DownlinkState
from .errors import MediaError
from .forwarder import Producer
from .limits import Limits
from .meter import LinkMeter
from .quality import LinkSample
from .recording.recorder import RoomRecorder
from .settings import MediaSettings
from .transport import PeerTransport

Notify = Callable[[str, str, dict[str, Any]], Awaitable[None]]  # participant id, event, payload


@dataclass
class Member:
    participant_id: str
    producers: dict[str, Producer]
    transport: PeerTransport
    info: dict[str, Any] = field(default_factory=dict)  # name, facility, role: for the recording manifest
    restarts: int = field(default=0)
    meter: LinkMeter | None = field(default=None)  # samples this member's link every second (``link-quality``)
    downlink: Downlink | None = field(default=None)  # chooses what this member receives (``adaptation``)
    limits: Limits = field(default_factory=Limits)  # its site's caps and audio-only mode (``limits.py``)


class Router:
    # Swappable for another media path on the same signaling (bench/baseline.py: aiortc's MediaRelay).
    producer_class: type[Producer] = Producer
    transport_class: type[PeerTransport] = PeerTransport

    def __init__(self, room_id: str, configuration: RTCConfiguration, notify: Notify,
                 settings: MediaSettings = MediaSettings()) -> None:
        self.room_id = room_id
        self.members: dict[str, Member] = {}
        self.recorder: RoomRecorder | None = None
        self.settings = settings
        self._configuration = configuration
        self._notify = notify
        self._lock = asyncio.Lock()  # membership changes one at a time

    def _transport(self, participant_id: str, producers: dict[str, Producer]) -> PeerTransport:
        async def notify(event: str, payload: dict[str, Any]) -> None:
            await self._notify(participant_id, event, payload)

        return self.transport_class(participant_id, self._configuration, producers, notify,
                                    simulcast=self.settings.simulcast)

    def _meter(self, member: Member) -> LinkMeter:
        async def report(sample: LinkSample) -> None:  # signaling passes it on to the whole room
            await self._notify(member.participant_id, "link-quality", sample.payload())

        return LinkMeter(member.participant_id, lambda: member.transport.pc, report,
                         adaptation=lambda: self.adaptation(member))

    @staticmethod
    def adaptation(member: Member) -> dict[str, Any]:
        """What the relay does for ``member`` now: its limits, and per publisher the layer it gets or why not."""
        state = member.downlink.state if member.downlink is not None else None
        return {
            "audioOnly": member.limits.audio_only,
            "uplinkCapKbps": member.limits.uplink_kbps,
            "downlinkCapKbps": member.limits.downlink_kbps,
            "videos": {} if state is None else {
                pid: {"layer": v["layer"], "paused": v["paused"], "reason": v["reason"]}
                for pid, v in state.videos.items()},
        }

    def _apply(self, member: Member) -> None:
        """Put ``member.limits`` in force: its downlink's budget, its video producer's REMB, its video withheld."""
        limits = member.limits
        if member.downlink is not None:
            member.downlink.cap_bps = limits.downlink_bps()
            member.downlink.video_off = limits.audio_only
        video = member.producers["video"]
        video.withheld = limits.audio_only
        video.set_remb_cap(limits.video_remb_bps())

    async def limit(self, participant_id: str, limits: Limits) -> None:
        """Change a member's limits mid-call; the next allocation (within ``downlink.TICK``) applies them."""
        member = self.member(participant_id)
        member.limits = limits
        self._apply(member)

    def _downlink(self, member: Member) -> Downlink:
        def changed(state: DownlinkState) -> None:  # this member's own page shows it on the tiles
            asyncio.ensure_future(self._notify(member.participant_id, "adaptation", state.payload()))

        return Downlink(lambda: member.transport.consumers.values(), self.settings.downlink_start_kbps, changed)

    def member(self, participant_id: str) -> Member:
        member = self.members.get(participant_id)
        if member is None:
            raise MediaError("not-joined", f"participant {participant_id} has no media session")
        return member

    async def join(self, participant_id: str, info: dict[str, Any] | None = None) -> None:
        async with self._lock:
            if participant_id in self.members:
                raise MediaError("internal", f"participant {participant_id} already has a media session")
            info = dict(info or {})
            limits = Limits.from_dict(info.pop("limits", None))
            producers = {kind: self.producer_class(participant_id, kind) for kind in ("audio", "video")}
            if self.recorder is not None:
                self.recorder.participant_joined(participant_id, info)
                for producer in producers.values():
                    producer.sink = self.recorder
            transport = self._transport(participant_id, producers)
            for other in self.members.values():
                for producer in other.producers.values():
                    transport.add_consumer(producer)
                for producer in producers.values():
                    other.transport.add_consumer(producer)
            member = self.members[participant_id] = Member(participant_id, producers, transport, info, limits=limits)
            member.meter = self._meter(member)
            member.meter.start()
            member.downlink = self._downlink(member)
            self._apply(member)
            member.downlink.start()
            await asyncio.gather(*(m.transport.renegotiate() for m in self.members.values()))

    async def leave(self, participant_id: str) -> None:
        async with self._lock:
            member = self.members.pop(participant_id, None)
            if member is None:
                return
            if member.meter is not None:
                member.meter.stop()
            if member.downlink is not None:
                member.downlink.stop()
            if self.recorder is not None:
                self.recorder.participant_left(participant_id)
            for producer in member.producers.values():
                producer.close()
            await member.transport.close()
            for other in self.members.values():
                for producer in member.producers.values():
                    await other.transport.remove_consumer(producer)
            await asyncio.gather(*(m.transport.renegotiate() for m in self.members.values()))

    async def restart(self, participant_id: str) -> None:
        """Replace a member's failed peer connection; the others keep their consumers and see a freeze."""
        async with self._lock:
            member = self.member(participant_id)
            old = member.transport
            member.transport = self._transport(participant_id, member.producers)
            member.restarts += 1
            for other in self.members.values():
                if other is not member:
                    for producer in other.producers.values():
                        member.transport.add_consumer(producer)
            await old.close()
            await member.transport.renegotiate()

    async def start_recording(self, root: Path, meta: dict[str, Any]) -> str:
        """Record every member's producers from now on, each to its own file."""
        async with self._lock:
            if self.recorder is None:
                self.recorder = RoomRecorder(root, self.room_id, meta, self._recording_failed)
                for member in self.members.values():
                    self.recorder.participant_joined(member.participant_id, member.info)
                    for producer in member.producers.values():
                        producer.sink = self.recorder
            return self.recorder.id

    async def stop_recording(self) -> None:
        recorder, self.recorder = self.recorder, None
        if recorder is None:
            return
        for member in self.members.values():
            for producer in member.producers.values():
                producer.sink = None
        await recorder.stop()

    async def _recording_failed(self, message: str) -> None:
        recording_id = self.recorder.id if self.recorder is not None else None
        payload = {"active": False, "recordingId": recording_id, "error": message}
        await asyncio.gather(*(self._notify(pid, "recording-state", payload) for pid in list(self.members)))

    async def close(self) -> None:
        """End the room at once (shutdown): no renegotiation with members who are all leaving."""
        async with self._lock:
            members, self.members = list(self.members.values()), {}
            for member in members:
                if member.meter is not None:
                    member.meter.stop()
                if member.downlink is not None:
                    member.downlink.stop()
                for producer in member.producers.values():
                    producer.close()
            await asyncio.gather(*(m.transport.close() for m in members))
        await self.stop_recording()
