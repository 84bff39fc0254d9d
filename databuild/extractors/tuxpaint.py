"""Tux Paint stamps: each drawing's .txt starts with its English description (later lines are translations)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

from mofi_platform.databuild.pairs import RawPair

__all__ = ["tuxpaint_pairs"]

LICENCE = "GPL-2.0-or-later"


def tuxpaint_pairs(dirs: Callable[[str], Path]) -> Iterator[RawPair]:
    stamps = dirs("tuxpaint") / "usr/share/tuxpaint/stamps"
    for txt in sorted(stamps.rglob("*.txt")):
        lines = txt.read_text(encoding="utf-8", errors="replace").splitlines()
        text = lines[0].strip() if lines else ""
        image = next((p for p in (txt.with_suffix(".png"), txt.with_suffix(".svg")) if p.exists()), None)
        if not text or image is None:
            continue
        yield RawPair(
            "tuxpaint",
            LICENCE,
            image.relative_to(stamps).as_posix(),
            text,
            image.read_bytes(),
            is_svg=image.suffix == ".svg",
        )
