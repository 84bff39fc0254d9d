"""Emoji drawings with their words: OpenMoji (annotation + tags) and Google's Noto set (emoji-datasource names).

Skin-tone variants are skipped: they are the same concept drawn five more times and would swamp the
corpus with near-duplicates.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

from mofi_platform.databuild.pairs import RawPair

__all__ = ["openmoji_pairs", "google_emoji_pairs"]


def openmoji_pairs(dirs: Callable[[str], Path]) -> Iterator[RawPair]:
    root = dirs("openmoji")
    for e in json.loads((root / "data/openmoji.json").read_text(encoding="utf-8")):
        if e.get("skintone"):
            continue
        svg = root / "color/svg" / f"{e['hexcode']}.svg"
        if not svg.exists():
            continue
        text = ", ".join(t for t in (e.get("annotation", ""), e.get("tags", ""), e.get("openmoji_tags", "")) if t)
        yield RawPair("openmoji", "CC-BY-SA-4.0", f"color/svg/{svg.name}", text, svg.read_bytes(), is_svg=True)


def google_emoji_pairs(dirs: Callable[[str], Path]) -> Iterator[RawPair]:
    names = dirs("emoji-datasource")
    images = dirs("emoji-google") / "img/google/64"
    for e in json.loads((names / "emoji.json").read_text(encoding="utf-8")):
        png = images / e["image"]
        if not e.get("has_img_google") or not png.exists():
            continue
        short = " ".join(f":{s}:" for s in e.get("short_names", []))
        text = f"{(e.get('name') or '').lower()} {short}".strip()
        yield RawPair("emoji-google", "Apache-2.0", f"img/google/64/{png.name}", text, png.read_bytes())
