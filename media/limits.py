"""What a site may use: a technician's caps on its connection point, and audio-only mode. Pure, no I/O.

Signaling decides the limits (the point's stored caps, the participant's own audio-only switch) and hands media
one ``Limits`` per participant; media applies them (``uplink.py`` towards the publisher, ``downlink.py`` towards
the subscriber). They travel as a plain dict across worker and cluster hops, so ``from_dict`` checks them again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .errors import MediaError

MIN_KBPS = 32
MAX_KBPS = 20_000
AUDIO_RESERVE_BPS = 40_000
"""What an uplink cap keeps for the site's own audio (Opus ~24 kbit/s and its packet overhead): video gets the rest."""
AUDIO_ONLY_DOWN_BPS = 56_000
"""An audio-only site's downlink budget: one talker (Opus ~24 kbit/s + packet overhead ≈ 47 kbit/s) and the others'
silence (DTX, ~2 kbit/s each) fit; two talking at once, only the loudest (``allocate_audio``). With turn-taking the
site's send and receive together stay within 64 kbit/s."""


@dataclass(frozen=True)
class Limits:
    uplink_kbps: int | None = None
    downlink_kbps: int | None = None
    audio_only: bool = False

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Limits:
        """From the wire form (``as_dict``); anything else is an ``invalid-payload`` error."""
        if not data:
            return cls()
        if not isinstance(data, dict) or set(data) - {"uplinkKbps", "downlinkKbps", "audioOnly"}:
            raise MediaError("invalid-payload", "limits take uplinkKbps, downlinkKbps and audioOnly only")
        caps = []
        for key in ("uplinkKbps", "downlinkKbps"):
            value = data.get(key)
            if value is not None and (type(value) is not int or not MIN_KBPS <= value <= MAX_KBPS):
                raise MediaError("invalid-payload", f"{key} must be an integer {MIN_KBPS}..{MAX_KBPS} or null")
            caps.append(value)
        audio_only = data.get("audioOnly", False)
        if type(audio_only) is not bool:
            raise MediaError("invalid-payload", "audioOnly must be true or false")
        return cls(caps[0], caps[1], audio_only)

    def as_dict(self) -> dict[str, Any]:
        return {"uplinkKbps": self.uplink_kbps, "downlinkKbps": self.downlink_kbps, "audioOnly": self.audio_only}

    def video_remb_bps(self) -> int | None:
        """The most the site's publisher may be told it can send as video (None: no cap); audio-only: the floor,
        should its page still send video (the relay forwards none of it)."""
        if self.audio_only:
            return MIN_KBPS * 1000
        if self.uplink_kbps is None:
            return None
        return max(self.uplink_kbps * 1000 - AUDIO_RESERVE_BPS, MIN_KBPS * 1000)

    def downlink_bps(self) -> float | None:
        """The most the site may be sent (None: whatever its link carries)."""
        caps = [c * 1000.0 for c in (self.downlink_kbps,) if c is not None]
        if self.audio_only:
            caps.append(AUDIO_ONLY_DOWN_BPS)
        return min(caps) if caps else None
