"""Openclipart drawings: the file name is the only text, as noisy as a web image's file name alt-text."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

from mofi_platform.databuild.pairs import RawPair

__all__ = ["openclipart_pairs", "filename_text"]

LICENCE = "CC0-1.0"


def filename_text(stem: str) -> str:
    """``chemistry_flask_matthew__02`` -> ``chemistry flask matthew 02``: separators only, nothing cleaned."""
    return " ".join(re.split(r"[_\s]+", stem)).strip()


def openclipart_pairs(dirs: Callable[[str], Path]) -> Iterator[RawPair]:
    root = dirs("openclipart") / "usr/share/openclipart/png"
    for png in sorted(root.rglob("*.png")):
        yield RawPair(
            "openclipart", LICENCE, png.relative_to(root).as_posix(), filename_text(png.stem), png.read_bytes()
        )
