"""Synthetic inputs shared by the throughput benchmarks (scripts import it from their own folder)."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

__all__ = ["random_jpegs"]


def random_jpegs(n: int, size: int = 256) -> list[bytes]:
    """``n`` noise images of ``size`` x ``size`` as JPEG bytes (seeded: every run gets the same ones)."""
    rng = np.random.default_rng(0)
    out = []
    for _ in range(n):
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(buf, format="JPEG", quality=85)
        out.append(buf.getvalue())
    return out
