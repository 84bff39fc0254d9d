"""Named icon sets (Iconify JSON): every icon drawn by a set's designers, worded by its name.

Why icon sets: the web draws each concrete thing many times by many hands (a rocket in Material,
Phosphor, Tabler, Font Awesome, Streamline, ...), and that is what teaches an image encoder what
stays the same. An icon's name is the only text the set gives, so it is the alt-text: the words of
the name without the style words that name the drawing rather than the thing ("rocket-launch-outline"
-> "rocket launch", "animal-cat-24-regular" -> "animal cat").

The SVG is built the way Iconify renders an icon: the body inside ``<svg viewBox="left top width
height">`` with the icon's (or the set's) size; monochrome sets paint with ``currentColor``, which the
root's ``color`` makes black, and the build renders it on white like every other SVG
(:func:`mofi_platform.databuild.images.rasterize_svg`). Hidden icons (kept by the set only for old
names) and aliases (another name for a parent's drawing) are skipped: they add no drawing. Sets that
ship one drawing at several pixel sizes ("-16", "-20", "-24" in Fluent) give one pair per drawing,
the largest size.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

from mofi_platform.databuild.pairs import RawPair
from mofi_platform.databuild.sources import SourcePackage

__all__ = ["icon_pairs", "icon_text", "icon_svg", "iconify_extractors"]

#: Trailing name words that name a drawing's style, not the thing drawn.
STYLE_WORDS = frozenset(
    {
        "outline",
        "outlined",
        "filled",
        "fill",
        "solid",
        "regular",
        "rounded",
        "round",
        "sharp",
        "bold",
        "duotone",
        "twotone",
        "duo",
        "light",
        "thin",
        "line",
        "linear",
        "broken",
        "flat",
        "color",
        "colored",
        "mono",
        "icon",
        "wordmark",
        "alt",
        "variant",
        "original",
        "plain",
    }
)
#: Name words that are a pixel size at which the same drawing is hinted (Fluent, Maki).
SIZE_WORDS = frozenset({"10", "11", "12", "14", "15", "16", "20", "24", "28", "32", "36", "40", "48", "64"})
_SIZE_PX = re.compile(r"^\d+px$")


def _is_style(word: str) -> bool:
    return word in STYLE_WORDS or word.isdigit() or bool(_SIZE_PX.match(word))


def icon_text(name: str) -> str:
    """``rocket-launch-outline`` -> ``rocket launch``: the name's words without trailing style words,
    sizes and variant numbers (at least one word stays: ``"24"`` stays ``"24"``)."""
    words = [w for w in re.split(r"[-_\s]+", name.lower()) if w]
    while len(words) > 1 and _is_style(words[-1]):
        words.pop()
    return " ".join(words)


def _drawing_key(name: str) -> tuple[str, int]:
    """The name without its pixel-size words, and the size (0 if none): one drawing at several sizes."""
    words = name.split("-")
    sizes = [int(w) for w in words if w in SIZE_WORDS]
    return "-".join(w for w in words if w not in SIZE_WORDS), max(sizes, default=0)


def icon_svg(icon: dict, default_width: int, default_height: int) -> bytes:
    """An Iconify icon record -> a standalone SVG document (monochrome ``currentColor`` drawn black)."""
    width, height = icon.get("width", default_width), icon.get("height", default_height)
    left, top = icon.get("left", 0), icon.get("top", 0)
    return (
        '<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" '
        f'width="{width}" height="{height}" viewBox="{left} {top} {width} {height}" color="#000">'
        f"{icon['body']}</svg>"
    ).encode()


def icon_pairs(pkg: SourcePackage, dirs: Callable[[str], Path]) -> Iterator[RawPair]:
    """One pair per drawing of the set ``pkg`` (source = the set's key, licence = its pinned licence)."""
    data = json.loads((dirs(pkg.key) / "icons.json").read_text(encoding="utf-8"))
    width, height = data.get("width", 16), data.get("height", 16)
    largest: dict[str, tuple[int, str]] = {}
    for name, icon in data["icons"].items():
        if icon.get("hidden"):
            continue
        key, size = _drawing_key(name)
        if key not in largest or size > largest[key][0]:
            largest[key] = (size, name)
    for _, name in sorted(largest.values(), key=lambda s: s[1]):
        yield RawPair(
            pkg.key,
            pkg.licence,
            f"icons.json#{name}",
            icon_text(name),
            icon_svg(data["icons"][name], width, height),
            is_svg=True,
        )


def iconify_extractors(
    sets: tuple[SourcePackage, ...],
) -> dict[str, Callable[[Callable[[str], Path]], Iterator[RawPair]]]:
    """set key -> extractor, for the corpus icon sets pinned in :mod:`mofi_platform.databuild.sources`."""
    return {p.key: partial(icon_pairs, p) for p in sets}
