"""A synthetic talker, sent as a browser sends speech: Opus mono at 24 kbit/s with in-band FEC, and DTX in pauses.

aiortc's own Opus encoder sends 96 kbit/s stereo without FEC, nothing like a browser, and a steady tone is not
speech to Opus (its voice detector stops producing FEC data for it after half a second). This track makes a
voiced, syllable-shaped signal (harmonics of a gliding pitch, 3 syllables a second that dip between them but,
as in real speech, not to silence; 2 s talk spurts with 0.6 s pauses), encodes it itself with libopus (``fec``,
``packet_loss``) and yields the encoded packets, which aiortc's sender only packetizes. In pauses it sends one
packet every 400 ms, as an encoder in DTX does.
"""

from __future__ import annotations

import asyncio
import fractions
import time

import av
import numpy as np
from aiortc import MediaStreamTrack

RATE = 48000
FRAME = 960  # 20 ms
TIME_BASE = fractions.Fraction(1, RATE)
TALK_SECONDS = 2.0
PAUSE_SECONDS = 0.6
DTX_INTERVAL = 20  # frames (400 ms) between the packets of a pause


class SpeechTrack(MediaStreamTrack):
    kind = "audio"

    def __init__(self, bitrate: int = 24000, expected_loss_percent: int = 10, seed: int = 0) -> None:
        super().__init__()
        self._codec = av.CodecContext.create("libopus", "w")
        self._codec.bit_rate = bitrate
        self._codec.format = "s16"
        self._codec.layout = "mono"
        self._codec.sample_rate = RATE
        self._codec.time_base = TIME_BASE
        self._codec.options = {"application": "voip", "fec": "1", "packet_loss": str(expected_loss_percent)}
        self._rng = np.random.default_rng(seed)
        self._frame = 0
        self._start: float | None = None
        self._pending: list[av.Packet] = []
        self.packets_sent = 0

    def talking(self, frame: int) -> bool:
        return (frame * FRAME / RATE) % (TALK_SECONDS + PAUSE_SECONDS) < TALK_SECONDS

    def _samples(self, frame: int) -> np.ndarray:
        t = (np.arange(FRAME) + frame * FRAME) / RATE
        noise = self._rng.normal(0, 20, FRAME)
        if not self.talking(frame):
            return noise.astype(np.int16).reshape(1, -1)
        pitch = 140 + 40 * np.sin(2 * np.pi * 0.7 * t)
        voiced = sum(np.sin(k * 2 * np.pi * pitch * t) / k for k in range(1, 12))
        envelope = 0.25 + 0.75 * np.clip(np.sin(2 * np.pi * 3 * t), 0, 1) ** 0.5  # syllables, never silence
        return (voiced * envelope * 5000 + noise).astype(np.int16).reshape(1, -1)

    async def recv(self) -> av.Packet:
        while True:
            if self._start is None:
                self._start = time.monotonic()
            await asyncio.sleep(max(0.0, self._start + self._frame * FRAME / RATE - time.monotonic()))
            frame = self._frame
            self._frame += 1
            audio = av.AudioFrame.from_ndarray(self._samples(frame), format="s16", layout="mono")
            audio.sample_rate, audio.pts, audio.time_base = RATE, frame * FRAME, TIME_BASE
            self._pending += self._codec.encode(audio)
            if not self._pending:
                continue
            packet = self._pending.pop(0)
            if self.talking(frame) or frame % DTX_INTERVAL == 0:
                self.packets_sent += 1
                return packet
