"""A headless participant: joins a Hoichan room over socket.io and exchanges media with aiortc, as a browser does.

It answers the server's offers, publishes the tracks it was given on the m-lines the server offers for them, and
labels what it receives with the offer's track map.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import socketio
from aiortc import (
    MediaStreamTrack,
    RTCBundlePolicy,
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpTransceiver,
    RTCSessionDescription,
)
from aiortc.rtp import RtpPacket
from aiortc.mediastreams import MediaStreamError

from media import hooks, nack
from media.rtp import is_vp8_keyframe_start

from .link_emulator import LinkEmulator
from .receive_stats import AudioLoss, ReceivedBytes
from .simulcast import SimulcastVideo

logger = logging.getLogger(__name__)


def keep_video_codec(sdp: str, mime: str) -> str:
    """``sdp`` with only ``mime`` (e.g. ``video/H264``) and its RTX left in the video sections: how a device
    that has no other codec answers."""
    out: list[str] = []
    sections = sdp.replace("\r\n", "\n").split("\nm=")
    for index, section in enumerate(sections):
        lines = section.split("\n") if index == 0 else ("m=" + section).split("\n")
        if lines[0].startswith("m=video"):
            names = {line.split()[0][9:]: line.split()[1].split("/")[0].lower()
                     for line in lines if line.startswith("a=rtpmap:")}
            kept = {pt for pt, name in names.items() if name == mime.split("/")[1].lower()}
            kept |= {line.split()[0][7:] for line in lines
                     if line.startswith("a=fmtp:") and line.split()[-1].removeprefix("apt=") in kept}
            head = lines[0].split()
            lines[0] = " ".join(head[:3] + [pt for pt in head[3:] if pt in kept])
            lines = [line for line in lines
                     if not line.startswith(("a=rtpmap:", "a=fmtp:", "a=rtcp-fb:"))
                     or line.split()[0].split(":")[1] in kept]
        out.append("\n".join(lines))
    return "\r\n".join("\n".join(out).split("\n"))


@dataclass
class ReceivedTrack:
    """What arrived on one remote track: decoded frame count, frame sizes, bytes, and (audio) packet loss.

    Video is decoded as a browser decodes it: from the next keyframe on when a packet never arrives
    (``hooks.decode_from_keyframes``), so a freeze measured here is the relay's doing, not aiortc's jitter buffer.
    """

    participant_id: str
    kind: str
    track: MediaStreamTrack
    frames: int = 0
    width: int = 0
    height: int = 0
    first_frame_at: float | None = None
    last_frame_at: float | None = None
    sizes: dict[tuple[int, int], int] = field(default_factory=dict)  # video: frames decoded at each size
    frame_times: list[float] = field(default_factory=list, repr=False)  # video: when each frame was decoded
    audio_loss: AudioLoss | None = None
    received_bytes: ReceivedBytes = field(default_factory=ReceivedBytes, repr=False)
    task: asyncio.Task[None] | None = field(default=None, repr=False)

    async def consume(self) -> None:
        try:
            while True:
                frame = await self.track.recv()
                now = time.monotonic()
                self.frames += 1
                self.last_frame_at = now
                if self.first_frame_at is None:
                    self.first_frame_at = now
                if self.kind == "video":
                    self.width, self.height = frame.width, frame.height
                    self.sizes[(frame.width, frame.height)] = self.sizes.get((frame.width, frame.height), 0) + 1
                    self.frame_times.append(now)
        except MediaStreamError:
            pass


class Participant:
    def __init__(
        self,
        url: str,
        room: str,
        name: str,
        facility: str = "",
        tracks: list[MediaStreamTrack] | None = None,
        consume: bool = True,
        ssl_verify: bool = True,
        record: bool | None = None,
        token: str | None = None,
        video_codec: str | None = None,
        emulator: LinkEmulator | None = None,
        simulcast: SimulcastVideo | None = None,
        point: str | None = None,
    ) -> None:
        """``token``: a sign-in token (``POST /api/login``); without one the participant joins as a guest.
        ``video_codec``: accept only this video codec (e.g. ``video/H264``), as a device without VP8 would.
        ``emulator``: send all media through this emulated link (its impairments apply to every packet).
        ``simulcast``: publish video as several encodings (its source, not ``tracks``, is the camera).
        ``point``: the connection point it joins from (its caps apply); audio-only stops its video, as the page does."""
        hooks.negotiate_opus_nack()  # answer the relay's NACKs for lost speech, as a browser does
        hooks.patient_consent()  # a site's long round trip must not close its connection (as the server's)
        self.url = url
        self.room = room
        self.name = name
        self.facility = facility
        self.tracks = {t.kind: t for t in tracks or []}
        self.consume = consume
        self.record = record
        self.recording: dict[str, Any] = {}
        self.token = token
        self.video_codec = video_codec
        self.emulator = emulator
        self.simulcast = simulcast
        self.point = point
        self.limits: dict[str, Any] = {}  # what the server says applies to us (``peer-updated`` about ourselves)
        self.id: str | None = None
        self.peers: dict[str, dict[str, Any]] = {}
        self.received: dict[str, ReceivedTrack] = {}  # by mid
        self.errors: list[dict[str, Any]] = []
        self.offers = 0
        self.pc: RTCPeerConnection | None = None
        self.sio = socketio.AsyncClient(reconnection=True, ssl_verify=ssl_verify)
        self._configuration = self._rtc_configuration([])
        self._resume_token: str | None = None
        self._track_map: dict[str, dict[str, str]] = {}
        self._joined = asyncio.Event()
        self._negotiated = asyncio.Event()
        self._register()

    def _register(self) -> None:
        self.sio.on("connect", self._on_connect)
        self.sio.on("offer", self._on_offer)
        self.sio.on("answer", self._on_answer)
        self.sio.on("peer-joined", self._on_peer_joined)
        self.sio.on("peer-left", self._on_peer_left)
        self.sio.on("peer-updated", self._on_peer_updated)
        self.sio.on("error", self._on_error)
        self.sio.on("media-failed", self._on_media_failed)
        self.sio.on("recording-state", self._on_recording_state)

    async def join(self, timeout: float = 10) -> dict[str, Any]:
        auth = {"token": self.token} if self.token else None
        await self.sio.connect(self.url, transports=["websocket"], wait_timeout=timeout, auth=auth)
        await asyncio.wait_for(self._joined.wait(), timeout)
        return {"id": self.id, "peers": dict(self.peers)}

    async def wait_negotiated(self, timeout: float = 10) -> None:
        await asyncio.wait_for(self._negotiated.wait(), timeout)

    async def _on_connect(self) -> None:
        payload: dict[str, Any] = {"room": self.room, "name": self.name, "facility": self.facility}
        if self._resume_token is not None:
            payload["resume"] = self._resume_token
        elif self.record is not None:
            payload["record"] = self.record
        if self.point is not None:
            payload["point"] = self.point
        ack = await self.sio.call("join", payload, timeout=10)
        if not ack.get("ok"):
            self.errors.append(ack.get("error", {}))
            return
        self.id = ack["self"]["id"]
        self.limits = ack["self"].get("limits") or {}
        self._resume_token = ack["resumeToken"]
        self.peers = {p["id"]: p for p in ack["peers"]}
        self.recording = ack.get("recording", {})
        if ack.get("iceServers"):
            self._configuration = self._rtc_configuration([RTCIceServer(**s) for s in ack["iceServers"]])
        self._joined.set()

    @staticmethod
    def _rtc_configuration(ice_servers: list[RTCIceServer]) -> RTCConfiguration:
        # max-bundle, as browsers do: aiortc's balanced policy strands m-lines beyond the first two
        return RTCConfiguration(iceServers=ice_servers, bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)

    def _new_pc(self) -> RTCPeerConnection:
        pc = RTCPeerConnection(self._configuration)

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            for transceiver in pc.getTransceivers():
                if transceiver.receiver.track is track and transceiver.mid in self._track_map:
                    info = self._track_map[transceiver.mid]
                    received = ReceivedTrack(info["participantId"], info["kind"], track)
                    counted = received.received_bytes
                    hooks.observe_receiver(transceiver.receiver, lambda packet: counted.add(packet.payload))
                    if received.kind == "video":
                        nack.install(transceiver.receiver)  # lost repairs asked for again each round trip, as a browser
                        if self.consume:  # only a decoder needs getting past a gap
                            def is_vp8(packet: RtpPacket, transceiver: RTCRtpTransceiver = transceiver) -> bool:
                                return any(c.payloadType == packet.payload_type and c.mimeType.lower() == "video/vp8"
                                           for c in hooks.negotiated_codecs(transceiver))

                            hooks.decode_from_keyframes(
                                transceiver.receiver,
                                lambda packet: is_vp8(packet) and is_vp8_keyframe_start(packet.payload), is_vp8)
                    if received.kind == "audio":
                        hooks.nack_audio(transceiver)  # ask the relay again for lost speech, as a browser does
                        loss = received.audio_loss = AudioLoss()
                        hooks.observe_receiver(transceiver.receiver,
                                               lambda packet: loss.add(packet.sequence_number, packet.payload))
                    if self.consume:
                        received.task = asyncio.ensure_future(received.consume())
                    self.received[transceiver.mid] = received

        return pc

    async def _on_offer(self, data: dict[str, Any]) -> None:
        self.offers += 1
        self._negotiated.clear()
        if self.pc is None:
            self.pc = self._new_pc()
        self._track_map = data["tracks"]
        offer = data["sdp"] if self.video_codec is None else keep_video_codec(data["sdp"], self.video_codec)
        if self.emulator is not None:
            offer = self.emulator.rewrite_server_sdp(offer)
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
        simulcast_slot = None
        for transceiver in self.pc.getTransceivers():
            if transceiver.mid in self._track_map or transceiver.sender.track is not None:
                continue
            if transceiver.kind == "video" and self.simulcast is not None:
                simulcast_slot = transceiver  # the simulcast sender sends on it, not aiortc's
                transceiver.direction = "sendonly"
                continue
            track = self.tracks.get(transceiver.kind)
            if track is not None:
                audio_only = transceiver.kind == "video" and self.limits.get("audioOnly")
                transceiver.sender.replaceTrack(None if audio_only else track)  # audio-only: the m-line stays idle
                transceiver.direction = "sendonly"
        answer = await self.pc.createAnswer()
        await self.pc.setLocalDescription(answer)
        local = self.pc.localDescription.sdp
        if self.emulator is not None:
            local = self.emulator.strip_candidates(local)
        await self.sio.emit("answer", {"sdp": local})
        if simulcast_slot is not None and self.simulcast is not None:
            self.simulcast.start(simulcast_slot)
        self._negotiated.set()

    async def _on_answer(self, data: dict[str, Any]) -> None:
        if self.pc is not None:
            sdp = data["sdp"] if self.emulator is None else self.emulator.rewrite_server_sdp(data["sdp"])
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))

    async def _on_peer_joined(self, data: dict[str, Any]) -> None:
        self.peers[data["id"]] = data

    async def _on_peer_updated(self, data: dict[str, Any]) -> None:
        if data["id"] != self.id:
            self.peers[data["id"]] = data
            return
        self.limits = data.get("limits") or {}
        self._send_video(not self.limits.get("audioOnly"))

    def _send_video(self, on: bool) -> None:
        """Send our camera or nothing on the video m-line (``replaceTrack``, no renegotiation), as the page does."""
        track = self.tracks.get("video")
        if self.pc is None or track is None:
            return
        for transceiver in self.pc.getTransceivers():
            if transceiver.kind == "video" and transceiver.mid not in self._track_map:
                transceiver.sender.replaceTrack(track if on else None)

    async def set_audio_only(self, on: bool) -> dict[str, Any]:
        """Switch our own site to audio-only (or back); the server's ``peer-updated`` then stops our video."""
        return dict(await self.sio.call("audio-only", {"on": on}, timeout=10))

    async def _on_peer_left(self, data: dict[str, Any]) -> None:
        self.peers.pop(data["id"], None)

    async def _on_recording_state(self, data: dict[str, Any]) -> None:
        self.recording = data

    async def _on_error(self, data: dict[str, Any]) -> None:
        self.errors.append(data)

    async def _on_media_failed(self, data: dict[str, Any]) -> None:
        await self.restart_media()

    async def restart_media(self) -> None:
        """Drop the peer connection and ask the server for a fresh one (what a browser does on ICE failure)."""
        old, self.pc = self.pc, None
        if old is not None:
            for sender in old.getSenders():
                sender.replaceTrack(None)  # keep our tracks alive for the next connection: closing stops them
        for received in self.received.values():
            if received.task is not None:
                received.task.cancel()
        self.received.clear()
        if old is not None:
            await old.close()
        await self.sio.emit("restart-media", {})

    def video_from(self, participant_id: str) -> ReceivedTrack | None:
        return self._from(participant_id, "video")

    def audio_from(self, participant_id: str) -> ReceivedTrack | None:
        return self._from(participant_id, "audio")

    def _from(self, participant_id: str, kind: str) -> ReceivedTrack | None:
        for received in self.received.values():
            if received.participant_id == participant_id and received.kind == kind:
                return received
        return None

    async def leave(self) -> None:
        if self.sio.connected:
            try:
                await self.sio.call("leave", {}, timeout=5)
            except (socketio.exceptions.TimeoutError, socketio.exceptions.BadNamespaceError):
                pass
            await self.sio.disconnect()
        await self.close_media()

    async def close_media(self) -> None:
        if self.simulcast is not None:
            self.simulcast.stop()
        for received in self.received.values():
            if received.task is not None:
                received.task.cancel()
        if self.pc is not None:
            await self.pc.close()
            self.pc = None
