"""What each recorded codec needs to become a file: container, keyframe test, picture size, header data.

Frames arrive as aiortc's depayloader leaves them: VP8 frames as sent, H.264 access units in Annex B (start codes).
VP8 goes to WebM; H.264, which WebM cannot hold, to Matroska. Nothing is re-encoded.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import av

__all__ = ["FORMATS", "Format", "h264_nal_units", "h264_size", "vp8_size"]


def vp8_size(frame: bytes) -> tuple[int, int] | None:
    """Width and height from a VP8 keyframe header (RFC 6386 §9.1); None for an interframe."""
    if len(frame) < 10 or frame[0] & 0x01 or frame[3:6] != b"\x9d\x01\x2a":
        return None
    return int.from_bytes(frame[6:8], "little") & 0x3FFF, int.from_bytes(frame[8:10], "little") & 0x3FFF


def h264_nal_units(frame: bytes) -> list[bytes]:
    """The NAL units of an Annex B access unit, without their start codes."""
    units: list[bytes] = []
    start = frame.find(b"\x00\x00\x01")
    while start >= 0:
        end = frame.find(b"\x00\x00\x01", start + 3)
        unit = frame[start + 3 : end if end >= 0 else len(frame)]
        units.append(unit.rstrip(b"\x00") if end >= 0 else unit)  # a 4-byte start code's zero belongs to the next
        start = end
    return [unit for unit in units if unit]


def _h264_keyframe(frame: bytes) -> bool:
    return any(unit[0] & 0x1F == 5 for unit in h264_nal_units(frame))


def h264_size(frame: bytes) -> tuple[int, int] | None:
    """Width and height of an IDR access unit carrying its SPS and PPS; None for anything else.

    Found by decoding that one frame: the SPS alone needs cropping and VUI parsing to give the displayed size, and
    one decode per file segment costs a few milliseconds.
    """
    types = {unit[0] & 0x1F for unit in h264_nal_units(frame)}
    if not {5, 7, 8} <= types:
        return None
    decoder = av.CodecContext.create("h264", "r")
    try:
        pictures = [*decoder.decode(av.Packet(frame)), *decoder.decode(None)]
    except av.FFmpegError:
        return None
    return (pictures[0].width, pictures[0].height) if pictures else None


def _h264_header(frame: bytes) -> bytes:
    """SPS and PPS of the first keyframe, in Annex B: the muxer turns them into Matroska's avcC header."""
    return b"".join(b"\x00\x00\x00\x01" + unit for unit in h264_nal_units(frame) if unit[0] & 0x1F in (7, 8))


@dataclass(frozen=True)
class Format:
    name: str  # as the manifest names the codec
    extension: str
    container: str  # FFmpeg muxer
    muxer_codec: str  # FFmpeg codec the stream is declared as (only declared: packets are muxed as they are)
    keyframe: Callable[[bytes], bool]
    size: Callable[[bytes], tuple[int, int] | None]  # of a keyframe a file can start with; None: wait for one
    header: Callable[[bytes], bytes]  # codec header data, from the file's first frame


FORMATS: dict[str, Format] = {
    "video/vp8": Format("VP8", "webm", "webm", "libvpx", lambda f: bool(f) and not f[0] & 0x01, vp8_size,
                        lambda f: b""),
    "video/h264": Format("H264", "mkv", "matroska", "h264", _h264_keyframe, h264_size, _h264_header),
    "audio/opus": Format("opus", "webm", "webm", "libopus", lambda f: True, lambda f: (0, 0), lambda f: b""),
}
"""Recorded codecs by RTP MIME type (lower case); anything else is forwarded but not recorded."""
