"""A grid PNG of search hits: thumbnail, rank, score and entity names under each."""

from __future__ import annotations

import base64
from collections.abc import Sequence

from PIL import Image, ImageDraw

from mofi.images import decode_rgb
from mofi_platform.services.embedder.vectors import Hit

__all__ = ["contact_sheet"]

CELL = 128
CAPTION = 28
MAX_THUMB_PIXELS = 1_000_000  # index thumbnails are ~100 px a side; anything far bigger is not one


def _thumb(hit: Hit) -> Image.Image:
    if hit.thumbnail:
        return decode_rgb(base64.b64decode(hit.thumbnail), max_pixels=MAX_THUMB_PIXELS)
    return Image.new("RGB", (CELL, CELL), "lightgray")  # row indexed without a thumbnail


def contact_sheet(hits: Sequence[Hit], columns: int = 5, title: str = "") -> Image.Image:
    columns = max(1, min(columns, len(hits) or 1))
    rows = max(1, -(-len(hits) // columns))
    top = CAPTION if title else 0
    sheet = Image.new("RGB", (columns * CELL, top + rows * (CELL + CAPTION)), "white")
    draw = ImageDraw.Draw(sheet)
    if title:
        draw.text((4, 8), title[:120], fill="black")
    for i, hit in enumerate(hits):
        x, y = (i % columns) * CELL, top + (i // columns) * (CELL + CAPTION)
        thumb = _thumb(hit)
        thumb.thumbnail((CELL - 4, CELL - 4))
        sheet.paste(thumb, (x + (CELL - thumb.width) // 2, y + (CELL - thumb.height) // 2))
        label = ", ".join(hit.entity_names) or hit.text or hit.pair_id
        draw.text((x + 2, y + CELL), f"{i + 1}. {hit.score:.3f}", fill="black")
        draw.text((x + 2, y + CELL + 13), label[:20], fill="dimgray")
    return sheet
