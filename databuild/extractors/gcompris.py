"""GCompris photos from its .rcc resources, worded by their Wikimedia Commons file names and board titles.

The text is what a crawler would have next to such a photo: the Commons file name ("Mont Saint-Michel
IMG 5109 (48875955288)") and, where an activity board titles the picture, that title. Pictures
without a README credit are skipped: their licence is unknown.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import unquote

from mofi_platform.databuild.gcompris_boards import Credit, iter_board_items, iter_resources, parse_readme
from mofi_platform.databuild.pairs import RawPair

__all__ = ["gcompris_pairs", "commons_text"]

_PICTURE = (".webp", ".jpg", ".jpeg", ".png")


def commons_text(source_url: str) -> str:
    """``.../wiki/File:Mont_Saint-Michel_IMG_5109.jpg`` -> ``Mont Saint-Michel IMG 5109``;
    other URLs -> last segment."""
    name = unquote(source_url.rstrip("/").rsplit("/", 1)[-1]).removeprefix("File:")
    name = re.sub(r"\.(jpe?g|png|webp|tiff?|gif|svg)$", "", name, flags=re.I)
    return name.replace("_", " ").strip()


def _camel_words(stem: str) -> str:
    return re.sub(r"(?<=[a-z])(?=[A-Z])", " ", stem).replace("_", " ")


def gcompris_pairs(dirs: Callable[[str], Path]) -> Iterator[RawPair]:
    root = dirs("gcompris")
    titles = {item.image: item.title for item in iter_board_items(root)}
    credits: dict[str, Credit] = {}
    pictures = []
    for entry in iter_resources(root):
        if posixpath.basename(entry.path).upper() == "README":
            folder = posixpath.dirname(entry.path)
            for rel, found in parse_readme(entry.data.decode("utf-8", "replace")).items():
                credits[posixpath.normpath(posixpath.join(folder, rel))] = found
        elif entry.path.lower().endswith(_PICTURE):
            pictures.append(entry)
    for entry in pictures:
        credit = credits.get(entry.path)
        if credit is None or not credit.licence:
            continue
        words = (
            commons_text(credit.source)
            if credit.source
            else _camel_words(posixpath.splitext(posixpath.basename(entry.path))[0])
        )
        title = titles.get(entry.path, "")
        text = f"{title}. {words}" if title and title.lower() not in words.lower() else words
        yield RawPair("gcompris", credit.licence, entry.path, text, entry.data, photo=True)
