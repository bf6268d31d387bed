"""How long the server spends checking and cleaning a shared image (``signaling.sharing.images.clean_image``).

Phone-sized photos with camera-like noise (a flat picture would compress to nothing and flatter the figures), as JPEG
and PNG; the minimum of several runs, one core. Prints a Markdown table for docs/performance.md.

    .venv/bin/python bench/sharing.py
"""

from __future__ import annotations

import io
import time

import numpy as np
from PIL import Image

from signaling.sharing.images import clean_image

SIZES = ((1600, 1200), (4032, 3024))  # a resized photo; a 12-megapixel phone camera
RUNS = 5


def photo(width: int, height: int) -> np.ndarray:
    rng = np.random.default_rng(1)
    x = np.linspace(0, 255, width, dtype=np.float32)[None, :]
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None]
    channels = [(x + y) / 2, x * 0.7 + y * 0.3, np.abs(x - y)]
    return np.stack([c + rng.normal(0, 12, (height, width)) for c in channels], 2).clip(0, 255).astype(np.uint8)


def main() -> None:
    print("| image | file MB | cleaned MB | clean_image ms (min of 5) |")
    print("|---|---|---|---|")
    for width, height in SIZES:
        pixels = Image.fromarray(photo(width, height))
        for kind, options in (("JPEG", {"quality": 90}), ("PNG", {})):
            out = io.BytesIO()
            pixels.save(out, kind, **options)
            data = out.getvalue()
            times = []
            for _ in range(RUNS):
                start = time.perf_counter()
                clean = clean_image(data, 50_000_000)
                times.append(time.perf_counter() - start)
            print(f"| {width}×{height} {kind} | {len(data) / 1e6:.1f} | {len(clean.data) / 1e6:.1f} "
                  f"| {min(times) * 1000:.0f} |")


if __name__ == "__main__":
    main()
