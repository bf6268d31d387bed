"""Test images for sharing: real JPEG/PNG files as a phone would make them (EXIF with GPS and orientation)."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, PngImagePlugin

GPS_IFD = 0x8825
ORIENTATION = 0x0112
MODEL = 0x0110


def photo(width: int = 64, height: int = 48) -> Image.Image:
    """A gradient with structure (not a flat colour), so an encoder has real work."""
    x = np.linspace(0, 255, width, dtype=np.uint8)[None, :].repeat(height, 0)
    y = np.linspace(0, 255, height, dtype=np.uint8)[:, None].repeat(width, 1)
    return Image.fromarray(np.stack([x, y, (x // 2 + y // 2)], axis=2), "RGB")


def jpeg_bytes(width: int = 64, height: int = 48, orientation: int | None = None) -> bytes:
    """A JPEG carrying a camera model and a GPS position (Hà Giang), like a phone photo."""
    exif = Image.Exif()
    exif[MODEL] = "HoichanPhone 1"
    if orientation is not None:
        exif[ORIENTATION] = orientation
    gps = exif.get_ifd(GPS_IFD)
    gps[1], gps[2] = "N", (22.0, 49.0, 25.0)
    gps[3], gps[4] = "E", (104.0, 59.0, 0.0)
    out = io.BytesIO()
    photo(width, height).save(out, "JPEG", exif=exif, quality=90)
    return out.getvalue()


def png_bytes(width: int = 64, height: int = 48) -> bytes:
    """A PNG with a text chunk naming the patient: metadata that must not survive."""
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "Benh nhan Nguyen Van A, 1970")
    out = io.BytesIO()
    photo(width, height).save(out, "PNG", pnginfo=info)
    return out.getvalue()


PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
HTML = b"<!doctype html><html><body><script>alert(1)</script></body></html>"
