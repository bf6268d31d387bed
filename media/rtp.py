"""RTP bytes for forwarding: keyframe detection and a header writer that patches a shared template.

A producer's packet is turned into bytes once per distinct header-extension layout; each consumer then only
patches payload type, sequence number, timestamp and SSRC in a copy. This is the per-packet hot path.
"""

from __future__ import annotations

import struct

from aiortc.rtp import RtpPacket

_HEADER = struct.Struct("!BBHII")
_PATCH = struct.Struct("!BHII")

ExtensionKey = tuple[int | None, int | None]  # (abs-send-time id, audio-level id)

# Where a VP8 payload descriptor keeps its picture id and TL0PICIDX (RFC 7741 §4.2):
# (offset of the picture id, picture id, 0x7F or 0x7FFF, offset of TL0PICIDX or 0, TL0PICIDX).
Vp8Ids = tuple[int, int, int, int, int]


def is_vp8_keyframe_start(payload: bytes) -> bool:
    """True for the first packet of a VP8 keyframe (RFC 7741 payload descriptor, then the VP8 header)."""
    size = len(payload)
    if size < 1:
        return False
    first = payload[0]
    if not first & 0x10 or first & 0x0F:  # S bit set and partition 0
        return False
    pos = 1
    if first & 0x80:  # X: extension byte follows
        if size < 2:
            return False
        ext = payload[1]
        pos = 2
        if ext & 0x80:  # I: picture id, one or two bytes
            if pos >= size:
                return False
            pos += 2 if payload[pos] & 0x80 else 1
        if ext & 0x40:  # L: TL0PICIDX
            pos += 1
        if ext & 0x30:  # T or K: TID/KEYIDX
            pos += 1
    return pos < size and not payload[pos] & 0x01


def vp8_ids(payload: bytes) -> Vp8Ids | None:
    """The picture id and TL0PICIDX of a VP8 packet and where they are; None when it carries no picture id.

    Simulcast layers number their pictures independently: a consumer switching layers renumbers them so that its
    subscriber's decoder sees one continuous stream (libwebrtc drops a keyframe whose picture id went backwards).
    """
    size = len(payload)
    if size < 3 or not payload[0] & 0x80:
        return None
    ext = payload[1]
    if not ext & 0x80:
        return None
    if payload[2] & 0x80:
        if size < 4:
            return None
        picture_id, mask, pos = ((payload[2] & 0x7F) << 8) | payload[3], 0x7FFF, 4
    else:
        picture_id, mask, pos = payload[2], 0x7F, 3
    if ext & 0x40 and pos < size:
        return 2, picture_id, mask, pos, payload[pos]
    return 2, picture_id, mask, 0, 0


def renumber_vp8(data: bytearray, payload_at: int, ids: Vp8Ids, picture_id: int, tl0: int) -> None:
    """Write ``picture_id`` (and ``tl0`` when the descriptor has TL0PICIDX) into a stamped packet, in place."""
    at = payload_at + ids[0]
    if ids[2] == 0x7FFF:
        data[at] = 0x80 | (picture_id >> 8)
        data[at + 1] = picture_id & 0xFF
    else:
        data[at] = picture_id & 0x7F
    if ids[3]:
        data[payload_at + ids[3]] = tl0


def is_h264_keyframe_start(payload: bytes) -> bool:
    """True when the packet starts an IDR picture or carries an SPS (RFC 6184)."""
    if not payload:
        return False
    nal = payload[0] & 0x1F
    if nal in (5, 7):
        return True
    if nal == 24:  # STAP-A: 2-byte sizes then NAL units
        pos = 1
        while pos + 2 < len(payload):
            size = (payload[pos] << 8) | payload[pos + 1]
            if payload[pos + 2] & 0x1F in (5, 7):
                return True
            pos += 2 + size
        return False
    if nal == 28 and len(payload) > 1:  # FU-A: start bit and inner type
        return bool(payload[1] & 0x80) and payload[1] & 0x1F in (5, 7)
    return False


def _extension_block(packet: RtpPacket, key: ExtensionKey, abs_send_time: int) -> bytes:
    """One-byte-header extension block (RFC 8285) with the extensions a relayed stream keeps."""
    abs_id, level_id = key
    elements = b""
    if abs_id:
        elements += bytes((abs_id << 4 | 2,)) + abs_send_time.to_bytes(3, "big")
    if level_id and packet.extensions.audio_level is not None:
        vad, level = packet.extensions.audio_level
        elements += bytes((level_id << 4, (0x80 if vad else 0) | (level & 0x7F)))
    if not elements:
        return b""
    elements += b"\x00" * (-len(elements) % 4)
    return struct.pack("!HH", 0xBEDE, len(elements) // 4) + elements


def template(packet: RtpPacket, key: ExtensionKey, abs_send_time: int, payload: bytes | None = None) -> bytes:
    """Header (with placeholder pt/seq/ts/ssrc), extensions and payload of ``packet``; padding is dropped."""
    extensions = _extension_block(packet, key, abs_send_time)
    first = 0x80 | (0x10 if extensions else 0)
    header = _HEADER.pack(first, 0, 0, 0, 0)
    return header + extensions + (packet.payload if payload is None else payload)


def stamp(tmpl: bytes, marker: int, payload_type: int, seq: int, timestamp: int, ssrc: int) -> bytes:
    """Copy of ``tmpl`` with this consumer's payload type, sequence number, timestamp and SSRC."""
    buf = bytearray(tmpl)
    _PATCH.pack_into(buf, 1, (marker << 7) | payload_type, seq, timestamp, ssrc)
    return bytes(buf)


def stamp_renumbered(tmpl: bytes, payload_size: int, marker: int, payload_type: int, seq: int, timestamp: int,
                     ssrc: int, ids: Vp8Ids, picture_id: int, tl0: int) -> bytes:
    """``stamp`` plus a VP8 picture id and TL0PICIDX of this consumer's numbering (simulcast producers only)."""
    buf = bytearray(tmpl)
    _PATCH.pack_into(buf, 1, (marker << 7) | payload_type, seq, timestamp, ssrc)
    renumber_vp8(buf, len(tmpl) - payload_size, ids, picture_id, tl0)
    return bytes(buf)
