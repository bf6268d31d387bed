"""The baseline: Hoichan's signaling and routers, but media through aiortc's own ``MediaRelay``.

This is what an aiortc relay does without Hoichan's pass-through path: each publisher's receiver decodes every
frame (it is not tapped), ``MediaRelay`` hands the frames to every consumer, and each consumer's sender encodes
them again. Run as ``python bench/baseline.py``, configured like ``hoichan serve`` (``HOICHAN_*`` variables), so
the benchmark's load generator drives it through the same socket.io protocol.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path
from typing import Any

import socketio
from aiohttp import web
from aiortc import MediaStreamTrack, RTCRtpTransceiver
from aiortc.contrib.media import MediaRelay

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the package, not bench/signaling.py

from media.forwarder import Producer
from media.router import Router
from media.service import LocalMediaService
from media.transport import PeerTransport, prefer_relayable_codecs
from signaling.app import MEDIA, build_authenticator, healthz
from signaling.config import Config, load_config
from signaling.events import SignalingEvents


class DecodingProducer(Producer):
    """Leaves its receiver untapped, so aiortc decodes every frame; one ``MediaRelay`` fans them out."""

    def __init__(self, participant_id: str, kind: str) -> None:
        super().__init__(participant_id, kind)
        self.relay = MediaRelay()
        self.track: asyncio.Future[MediaStreamTrack] = asyncio.get_running_loop().create_future()
        self._transceiver: RTCRtpTransceiver | None = None

    def attach(self, transceiver: RTCRtpTransceiver) -> None:
        self._transceiver = transceiver

    def negotiated(self, transceiver: RTCRtpTransceiver) -> None:
        """aiortc creates the remote track only when the publisher's answer is applied."""
        track = transceiver.receiver.track
        if transceiver is self._transceiver and track is not None and not self.track.done():
            self.track.set_result(track)


class RelayedTrack(MediaStreamTrack):
    """A consumer's sender track: the producer's decoded frames, which the sender encodes again.

    Unbuffered: a sender that cannot keep up skips to the newest frame (fps drops) instead of queueing decoded
    frames without bound.
    """

    def __init__(self, producer: DecodingProducer) -> None:
        super().__init__()
        self.kind = producer.kind
        self._producer = producer
        self._proxy: MediaStreamTrack | None = None

    async def recv(self) -> Any:
        if self._proxy is None:
            source = await self._producer.track
            self._proxy = self._producer.relay.subscribe(source, buffered=False)
        return await self._proxy.recv()

    def stop(self) -> None:
        super().stop()
        if self._proxy is not None:
            self._proxy.stop()


class EncodingConsumer:
    """The part of ``Consumer`` that ``PeerTransport`` uses; the sender's own encoder loop does the sending."""

    active = False  # nothing for the subscriber's downlink to adapt: the sender encodes for it alone

    def __init__(self, producer: Producer, transceiver: RTCRtpTransceiver) -> None:
        self.producer = producer
        self.transceiver = transceiver
        self.sender = transceiver.sender

    def activate(self) -> None:
        pass

    def close(self) -> None:
        pass


class MediaRelayTransport(PeerTransport):
    def add_consumer(self, producer: Producer) -> None:
        assert isinstance(producer, DecodingProducer)
        transceiver = self.pc.addTransceiver(RelayedTrack(producer), direction="sendonly")
        prefer_relayable_codecs(transceiver)
        self.consumers[producer] = EncodingConsumer(producer, transceiver)  # type: ignore[assignment]


class MediaRelayRouter(Router):
    producer_class = DecodingProducer
    transport_class = MediaRelayTransport


class MediaRelayService(LocalMediaService):
    router_class = MediaRelayRouter


def create_app(config: Config) -> web.Application:
    """Signaling as in ``signaling.app.create_app``, minus static pages, with the MediaRelay media service."""
    app = web.Application()
    sio = socketio.AsyncServer(async_mode="aiohttp", cors_allowed_origins=[], logger=False, engineio_logger=False)
    sio.attach(app)

    async def notify(participant_id: str, event: str, payload: dict[str, Any]) -> None:
        await events.notify(participant_id, event, payload)

    media = MediaRelayService(ice_servers=[], notify=notify, host_addresses=list(config.media.ice_addresses))
    events = SignalingEvents(
        sio,
        media,
        build_authenticator(config),  # guests allowed by default: the load generator joins as guests
        ice_servers=[],
        max_message_bytes=config.server.max_message_bytes,
        room_max_participants=config.media.room_max_participants,
        reconnect_grace_seconds=config.server.reconnect_grace_seconds,
    )
    app[MEDIA] = media

    async def close_media(app: web.Application) -> None:
        await media.close()

    app.on_shutdown.append(close_media)
    app.router.add_get("/healthz", healthz)
    return app


if __name__ == "__main__":
    settings = load_config(None)
    logging.basicConfig(level=settings.logging.level)
    web.run_app(create_app(settings), host=settings.server.host, port=settings.server.port, access_log=None,
                print=None)
