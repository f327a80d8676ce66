"""PNG output: single digits and grids of originals beside reconstructions."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def to_uint8(img: np.ndarray) -> np.ndarray:
    return (np.clip(np.squeeze(np.asarray(img)), 0.0, 1.0) * 255).round().astype(np.uint8)


def save_digit(img: np.ndarray, path: Path, scale: int = 4) -> None:
    im = Image.fromarray(to_uint8(img), mode="L")
    im.resize((im.width * scale, im.height * scale), Image.NEAREST).save(path)


def save_pair_grid(originals: np.ndarray, reconstructions: np.ndarray, path: Path, scale: int = 3,
                   extra_rows: list[np.ndarray] | None = None, title: str | None = None) -> None:
    """One column per victim: original on top, reconstruction below (then any extra rows), 2 px gaps; `title`
    is written above the grid."""
    rows = [originals, reconstructions] + list(extra_rows or [])
    n = len(originals)
    gap = 2
    grid = np.full((len(rows) * (28 + gap) + gap, n * (28 + gap) + gap), 255, dtype=np.uint8)
    for r, imgs in enumerate(rows):
        for c in range(n):
            y, x = gap + r * (28 + gap), gap + c * (28 + gap)
            grid[y:y + 28, x:x + 28] = to_uint8(imgs[c])
    im = Image.fromarray(grid, mode="L")
    im = im.resize((im.width * scale, im.height * scale), Image.NEAREST)
    if title:
        from PIL import ImageDraw

        band = 16
        titled = Image.new("L", (max(im.width, 8 * len(title)), im.height + band), 255)
        titled.paste(im, (0, band))
        ImageDraw.Draw(titled).text((2, 2), title, fill=0)
        im = titled
    im.save(path)
