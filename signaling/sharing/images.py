"""Checking and cleaning a shared medical image: is it really a JPEG or PNG, and what must not leave the site.

The type is decided by the file's first bytes, never its name or the client's Content-Type; the whole image is then
decoded with Pillow (a truncated or corrupt file fails here, not in someone's browser) and encoded again from its
pixels alone. Re-encoding drops every metadata block a phone camera writes (EXIF with GPS position, camera serial,
XMP, PNG text chunks): a patient photo must not tell where it was taken. The EXIF orientation is applied to the
pixels first, so dropping it does not turn the picture on its side.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Literal

from PIL import Image, ImageOps

__all__ = ["CleanImage", "ImageRejected", "clean_image", "sniff"]

Format = Literal["jpeg", "png"]
_MAGIC: dict[bytes, Format] = {b"\xff\xd8\xff": "jpeg", b"\x89PNG\r\n\x1a\n": "png"}
_PIL_FORMAT: dict[Format, str] = {"jpeg": "JPEG", "png": "PNG"}
_JPEG_QUALITY = 92  # visually lossless for X-ray and ECG photos; the original is not kept
MEDIA_TYPES: dict[Format, str] = {"jpeg": "image/jpeg", "png": "image/png"}
EXTENSIONS: dict[Format, str] = {"jpeg": "jpg", "png": "png"}


class ImageRejected(Exception):
    """Not an image we keep: ``code`` is ``unsupported-type`` (not JPEG/PNG) or ``invalid-image`` (broken, too big)."""

    def __init__(self, code: Literal["unsupported-type", "invalid-image"], message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class CleanImage:
    data: bytes
    format: Format
    width: int
    height: int


def sniff(head: bytes) -> Format | None:
    """JPEG or PNG by magic bytes; None for anything else (a PDF or an HTML page renamed .png included)."""
    for magic, kind in _MAGIC.items():
        if head.startswith(magic):
            return kind
    return None


def clean_image(data: bytes, max_pixels: int) -> CleanImage:
    """Decode ``data`` fully and re-encode it without metadata; ``ImageRejected`` if it is not a sound JPEG/PNG.

    CPU-bound (about 0.2 s for a 12-megapixel phone JPEG, docs/performance.md): call it in a thread.
    """
    kind = sniff(data[:8])
    if kind is None:
        raise ImageRejected("unsupported-type", "only JPEG or PNG images can be shared (checked by content)")
    try:
        image = Image.open(io.BytesIO(data), formats=[_PIL_FORMAT[kind]])
        width, height = image.size  # from the header: checked before a single pixel is decoded
        if width * height > max_pixels:
            raise ImageRejected("invalid-image", f"image is {width}×{height} pixels; the limit is {max_pixels} pixels")
        image.load()  # decodes every pixel: a truncated or corrupt file raises here
        image = ImageOps.exif_transpose(image)
    except ImageRejected:
        raise
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageRejected("invalid-image", f"the {kind.upper()} file cannot be decoded: {exc}") from None
    if width < 1 or height < 1:
        raise ImageRejected("invalid-image", "the image has no pixels")
    out = io.BytesIO()
    icc = image.info.get("icc_profile")  # colour, not identity: kept so a wound photo keeps its colours
    if kind == "jpeg":
        if image.mode not in ("L", "RGB", "CMYK"):
            image = image.convert("RGB")
        image.save(out, "JPEG", quality=_JPEG_QUALITY, icc_profile=icc)
    else:
        image.save(out, "PNG", icc_profile=icc)
    return CleanImage(out.getvalue(), kind, image.width, image.height)
