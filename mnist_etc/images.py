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
                   extra_rows: list[np.ndarray] | None = None) -> None:
    """One column per victim: original on top, reconstruction below (then any extra rows), 2 px gaps."""
    rows = [originals, reconstructions] + list(extra_rows or [])
    n = len(originals)
    gap = 2
    grid = np.full((len(rows) * (28 + gap) + gap, n * (28 + gap) + gap), 255, dtype=np.uint8)
    for r, imgs in enumerate(rows):
        for c in range(n):
            y, x = gap + r * (28 + gap), gap + c * (28 + gap)
            grid[y:y + 28, x:x + 28] = to_uint8(imgs[c])
    im = Image.fromarray(grid, mode="L")
    im.resize((im.width * scale, im.height * scale), Image.NEAREST).save(path)
