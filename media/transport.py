"""One participant's peer connection (mediasoup's WebRtcTransport): it publishes and it consumes.

The server is always the offerer for layout changes (a participant joined or left), so the browser never has to
resolve glare: it answers. The participant's own media arrives on two ``recvonly`` m-lines that feed its
producers; every other participant's track leaves on a ``sendonly`` m-line that carries a consumer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpSender,
    RTCRtpTransceiver,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError
from aiortc.sdp import candidate_from_sdp

from .errors import MediaError
from .forwarder import Consumer, Producer
from .simulcast import offer_simulcast

logger = logging.getLogger(__name__)

Notify = Callable[[str, dict[str, Any]], Awaitable[None]]

VIDEO_CODECS = ("video/vp8", "video/h264", "video/rtx")
AUDIO_CODECS = ("audio/opus",)


def prefer_relayable_codecs(transceiver: RTCRtpTransceiver) -> None:
    """Offer only codecs every browser can receive as-is, so any producer fits any consumer."""
    wanted = VIDEO_CODECS if transceiver.kind == "video" else AUDIO_CODECS
    codecs = [c for c in RTCRtpSender.getCapabilities(transceiver.kind).codecs if c.mimeType.lower() in wanted]
    transceiver.setCodecPreferences(codecs)


class ForwardedTrack(MediaStreamTrack):
    """The track a consumer's sender holds: it never yields, since packets bypass the sender's encoder loop."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self._ended = asyncio.Event()

    async def recv(self) -> Any:
        await self._ended.wait()
        raise MediaStreamError

    def stop(self) -> None:
        super().stop()
        self._ended.set()


class PeerTransport:
    def __init__(
        self,
        participant_id: str,
        configuration: RTCConfiguration,
        producers: dict[str, Producer],
        notify: Notify,
        simulcast: bool = False,
    ) -> None:
        self.participant_id = participant_id
        self.pc = RTCPeerConnection(configuration)
        self.consumers: dict[Producer, Consumer] = {}
        self._producers = producers
        self._publish: dict[str, RTCRtpTransceiver] = {}
        self._notify = notify
        self._simulcast = simulcast
        self._lock = asyncio.Lock()
        self._offer_pending = False
        self._dirty = False
        self._closed = False
        for kind in ("audio", "video"):
            transceiver = self.pc.addTransceiver(kind, direction="recvonly")
            prefer_relayable_codecs(transceiver)
            producers[kind].attach(transceiver)
            self._publish[kind] = transceiver
        self.pc.on("connectionstatechange", self._on_connection_state)

    @property
    def connection_state(self) -> str:
        return str(self.pc.connectionState)

    def add_consumer(self, producer: Producer) -> None:
        transceiver = self.pc.addTransceiver(ForwardedTrack(producer.kind), direction="sendonly")
        prefer_relayable_codecs(transceiver)
        self.consumers[producer] = Consumer(producer, transceiver)

    async def remove_consumer(self, producer: Producer) -> None:
        consumer = self.consumers.pop(producer, None)
        if consumer is None:
            return
        consumer.close()
        consumer.transceiver.direction = "inactive"
        if consumer.sender.track is not None:
            consumer.sender.track.stop()
        await consumer.sender.stop()

    def track_map(self) -> dict[str, dict[str, str]]:
        """Which participant's media each sendonly m-line carries, for the client to label its tiles."""
        return {
            c.transceiver.mid: {"participantId": c.producer.participant_id, "kind": c.producer.kind}
            for c in self.consumers.values()
            if c.transceiver.mid is not None
        }

    async def renegotiate(self) -> None:
        """Send a fresh offer, or remember to once the pending negotiation completes."""
        async with self._lock:
            if self._closed:
                return
            if self._offer_pending or self.pc.signalingState != "stable":
                self._dirty = True
                return
            await self._send_offer()

    async def accept_answer(self, sdp: str) -> None:
        async with self._lock:
            if not self._offer_pending:
                raise MediaError("negotiation-pending", "no offer is waiting for an answer")
            await self._apply(RTCSessionDescription(sdp=sdp, type="answer"))
            self._offer_pending = False
            await self._after_negotiation()

    async def accept_offer(self, sdp: str) -> str:
        """Client-initiated renegotiation; refused while another negotiation is under way."""
        if self._lock.locked() or self._offer_pending:
            raise MediaError("negotiation-pending", "a negotiation is already in progress; answer it first")
        async with self._lock:
            await self._apply(RTCSessionDescription(sdp=sdp, type="offer"))
            answer = await self.pc.createAnswer()
            await self.pc.setLocalDescription(answer)
            local = self.pc.localDescription.sdp
            await self._after_negotiation()
            return local

    async def add_candidate(self, candidate: str, sdp_mid: str | None, sdp_mline_index: int | None) -> None:
        if not candidate:
            await self.pc.addIceCandidate(None)
            return
        try:
            parsed = candidate_from_sdp(candidate.split(":", 1)[1] if candidate.startswith("candidate:") else candidate)
        except (ValueError, IndexError, KeyError, AssertionError):  # aiortc asserts on short candidates
            raise MediaError("invalid-payload", "unparseable ICE candidate") from None
        parsed.sdpMid = sdp_mid
        parsed.sdpMLineIndex = sdp_mline_index
        if sdp_mid is None and sdp_mline_index is None:
            parsed.sdpMLineIndex = 0
        await self.pc.addIceCandidate(parsed)

    async def close(self) -> None:
        self._closed = True
        for producer in list(self.consumers):
            consumer = self.consumers.pop(producer)
            consumer.close()
            if consumer.sender.track is not None:
                consumer.sender.track.stop()
        await self.pc.close()

    async def _apply(self, description: RTCSessionDescription) -> None:
        try:
            await self.pc.setRemoteDescription(description)
        except MediaError:
            raise
        except Exception as exc:  # aiortc raises ValueError, InvalidStateError, KeyError... on bad SDP
            logger.info("participant %s sent an unusable %s: %s", self.participant_id, description.type, exc)
            raise MediaError("invalid-sdp", f"the {description.type} could not be applied: {exc}") from None

    async def _send_offer(self) -> None:
        offer = await self.pc.createOffer()
        await self.pc.setLocalDescription(offer)
        self._offer_pending = True
        sdp = self.pc.localDescription.sdp
        video_mid = self._publish["video"].mid
        if self._simulcast and video_mid is not None:
            sdp = offer_simulcast(sdp, video_mid)
        await self._notify("offer", {"sdp": sdp, "tracks": self.track_map()})

    async def _after_negotiation(self) -> None:
        for kind, transceiver in self._publish.items():
            self._producers[kind].negotiated(transceiver)
        for consumer in self.consumers.values():
            if consumer.transceiver.currentDirection in ("sendonly", "sendrecv"):
                consumer.activate()
        if self._dirty and not self._closed:
            self._dirty = False
            await self._send_offer()

    async def _on_connection_state(self) -> None:
        state = self.pc.connectionState
        logger.info("participant %s connection %s", self.participant_id, state)
        if state == "failed" and not self._closed:
            await self._notify("media-failed", {})
