"""Shared images: type by content, full decode, metadata (EXIF/GPS, PNG text) gone, orientation kept."""

from __future__ import annotations

import io

import pytest
from PIL import Image
from sharing_support import GPS_IFD, HTML, PDF, jpeg_bytes, png_bytes

from signaling.sharing.images import ImageRejected, clean_image, sniff

LIMIT = 50_000_000


def test_jpeg_loses_exif_and_gps_but_keeps_its_pixels() -> None:
    original = jpeg_bytes()
    assert b"Exif" in original and b"HoichanPhone" in original
    clean = clean_image(original, LIMIT)
    assert (clean.format, clean.width, clean.height) == ("jpeg", 64, 48)
    assert b"Exif" not in clean.data and b"HoichanPhone" not in clean.data
    image = Image.open(io.BytesIO(clean.data))
    assert image.format == "JPEG" and not image.getexif() and not image.getexif().get_ifd(GPS_IFD)
    before = Image.open(io.BytesIO(original)).convert("RGB").getpixel((40, 30))
    after = image.convert("RGB").getpixel((40, 30))
    assert all(abs(a - b) <= 6 for a, b in zip(before, after, strict=True))  # re-encoded, not repainted


def test_exif_orientation_is_applied_before_it_is_dropped() -> None:
    clean = clean_image(jpeg_bytes(64, 48, orientation=6), LIMIT)  # "rotate 90° clockwise to display"
    assert (clean.width, clean.height) == (48, 64)


def test_png_loses_its_text_chunks() -> None:
    original = png_bytes()
    assert b"Nguyen Van A" in original
    clean = clean_image(original, LIMIT)
    assert clean.format == "png" and b"Nguyen Van A" not in clean.data
    assert Image.open(io.BytesIO(clean.data)).size == (64, 48)


@pytest.mark.parametrize("data", [PDF, HTML, b"", b"GIF89a" + b"\0" * 64], ids=["pdf", "html", "empty", "gif"])
def test_anything_but_jpeg_or_png_is_refused_by_content(data: bytes) -> None:
    assert sniff(data[:8]) is None
    with pytest.raises(ImageRejected) as refused:
        clean_image(data, LIMIT)
    assert refused.value.code == "unsupported-type"


@pytest.mark.parametrize("make", [jpeg_bytes, png_bytes], ids=["jpeg", "png"])
def test_a_truncated_image_is_refused(make: object) -> None:
    data = make(640, 480)  # type: ignore[operator]
    with pytest.raises(ImageRejected) as refused:
        clean_image(data[: len(data) // 2], LIMIT)
    assert refused.value.code == "invalid-image"


def test_a_png_magic_on_garbage_is_refused() -> None:
    with pytest.raises(ImageRejected) as refused:
        clean_image(b"\x89PNG\r\n\x1a\n" + b"not really a png" * 10, LIMIT)
    assert refused.value.code == "invalid-image"


def test_too_many_pixels_is_refused_before_decoding() -> None:
    with pytest.raises(ImageRejected) as refused:
        clean_image(png_bytes(2000, 1000), 1_000_000)
    assert refused.value.code == "invalid-image" and "2000×1000" in refused.value.message


def test_a_16_bit_greyscale_png_stays_16_bit() -> None:
    out = io.BytesIO()
    Image.new("I;16", (32, 32), 40000).save(out, "PNG")
    clean = clean_image(out.getvalue(), LIMIT)
    assert Image.open(io.BytesIO(clean.data)).mode.startswith("I")
