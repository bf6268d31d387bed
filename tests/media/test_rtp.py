"""The per-packet helpers: VP8 picture-id renumbering for simulcast layer switches."""

from __future__ import annotations

import struct

from aiortc.rtp import RtpPacket

from media.rtp import renumber_vp8, stamp_renumbered, template, vp8_ids


def descriptor(picture_id: int, tl0: int | None, wide: bool = True) -> bytes:
    ext = 0x80 | (0x40 if tl0 is not None else 0)
    pid = struct.pack("!H", 0x8000 | picture_id) if wide else bytes((picture_id & 0x7F,))
    return bytes((0x90, ext)) + pid + (bytes((tl0,)) if tl0 is not None else b"")


def test_picture_id_and_tl0_are_found_and_rewritten() -> None:
    payload = descriptor(0x1234, 7) + b"\x9d\x01\x2a frame"
    ids = vp8_ids(payload)
    assert ids == (2, 0x1234, 0x7FFF, 4, 7)
    data = bytearray(payload)
    renumber_vp8(data, 0, ids, 0x7FFE, 255)
    assert vp8_ids(bytes(data)) == (2, 0x7FFE, 0x7FFF, 4, 255)
    assert bytes(data[5:]) == payload[5:]  # the frame itself is untouched


def test_seven_bit_picture_ids_and_missing_fields() -> None:
    short = descriptor(0x55, None, wide=False) + b"x"
    ids = vp8_ids(short)
    assert ids == (2, 0x55, 0x7F, 0, 0)
    data = bytearray(short)
    renumber_vp8(data, 0, ids, 0x81, 9)  # wraps at 7 bits, no TL0PICIDX to write
    assert data[2] == 0x01 and bytes(data[3:]) == b"x"
    assert vp8_ids(b"\x10\x00\x00") is None  # no extension byte: no picture id
    assert vp8_ids(bytes((0x90, 0x40, 3, 0))) is None  # extension without a picture id
    assert vp8_ids(bytes((0x90, 0x80))) is None  # truncated


def test_stamp_renumbered_patches_header_and_descriptor_of_a_copy() -> None:
    payload = descriptor(100, 3) + b"frame"
    packet = RtpPacket(payload_type=96, sequence_number=1, timestamp=2, ssrc=3, payload=payload)
    tmpl = template(packet, (None, None), 0)
    ids = vp8_ids(payload)
    assert ids is not None
    data = stamp_renumbered(tmpl, len(payload), 1, 100, 500, 9000, 42, ids, 7, 200)
    parsed = RtpPacket.parse(data)
    assert (parsed.payload_type, parsed.sequence_number, parsed.timestamp, parsed.ssrc, parsed.marker) == (
        100, 500, 9000, 42, 1)
    assert vp8_ids(parsed.payload) == (2, 7, 0x7FFF, 4, 200)
    assert vp8_ids(tmpl[len(tmpl) - len(payload):]) == ids  # the shared template is unchanged
