"""The media relay's tunable behaviour, as the server's config hands it to every media worker."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class MediaSettings:
    simulcast: bool = True
    """Ask publishing browsers for three video layers (``simulcast.py``)."""
    downlink_start_kbps: float = 600.0
    """A new subscriber's downlink estimate before any feedback (``downlink.py``)."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
