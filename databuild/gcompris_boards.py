"""What GCompris says about its pictures: board items (title, text) and README credits per file.

Why parse both: the photos themselves carry no text. The activity boards (QML/JSON inside the .rcc
resources) give a title and a paragraph for explore-activity pictures, and each resource folder's
README names the Wikimedia Commons original, its author and licence: the Commons file name is the
noisy alt-text, the licence goes with the pair.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from mofi_platform.databuild.rcc import RccEntry, RccError, iter_rcc

__all__ = ["BoardItem", "Credit", "iter_board_items", "parse_readme", "iter_resources", "rcc_files", "KINDS"]

#: Activities whose boards name real things, and the entity type of those things.
KINDS = {
    "explore_monuments": "monument",
    "explore_world_animals": "animal",
    "explore_farm_animals": "animal",
    "geo-country": "region",
}

_BLOCK = re.compile(r"\{[^{}]*\}", re.S)
_FIELD = re.compile(r'"(?P<key>\w+)"\s*:\s*(?:qsTr\()?"(?P<value>(?:[^"\\]|\\.)*)"')
_COMMENT = re.compile(r"//:\s*(?P<text>[^\n]+)")


@dataclass(frozen=True)
class BoardItem:
    activity: str
    key: str  # image path relative to the activity's resource folder, without extension
    image: str  # resource path of the picture ("gcompris/src/activities/...")
    title: str
    text: str
    kind: str


@dataclass(frozen=True)
class Credit:
    source: str  # usually a Wikimedia Commons file URL
    licence: str
    author: str


def rcc_files(root: Path) -> list[Path]:
    return sorted((root / "usr/share/gcompris-qt/rcc").glob("*.rcc"))


@lru_cache(maxsize=4)
def _entries(path: Path) -> tuple[RccEntry, ...]:
    try:
        return tuple(iter_rcc(path.read_bytes()))
    except (RccError, OSError):
        return ()


def iter_resources(root: Path) -> Iterator[RccEntry]:
    for path in rcc_files(root):
        yield from _entries(path)


def _activity(resource_path: str) -> str:
    m = re.search(r"activities/([^/]+)/", resource_path)
    return m.group(1) if m else ""


def _resource_dir(activity: str, image: str) -> str:
    return image.split(f"activities/{activity}/resource/", 1)[-1]


def iter_board_items(root: Path) -> Iterator[BoardItem]:
    """Items of the known activities' boards that point at a picture and give it a title."""
    for path in rcc_files(root):
        for entry in _entries(path):
            activity = _activity(entry.path)
            if activity not in KINDS or not entry.path.endswith((".qml", ".json")) or "/board" not in entry.path:
                continue
            yield from _items(activity, entry.data.decode("utf-8", "replace"))


def _items(activity: str, text: str) -> Iterator[BoardItem]:
    for block in _BLOCK.findall(text):
        fields = {m["key"]: m["value"].replace('\\"', '"') for m in _FIELD.finditer(block)}
        image = fields.get("image2") or fields.get("pixmapfile") or fields.get("image", "")
        title = fields.get("title") or fields.get("toolTipText") or fields.get("text2", "")
        if not image or not title or image.endswith("key.svg"):
            continue
        image = image.removeprefix("qrc:/")
        if not image.startswith("gcompris/"):
            image = f"gcompris/src/activities/{activity}/resource/{image}"
        comment = _COMMENT.search(block)
        body = fields.get("text", "") if fields.get("title") else (comment["text"].strip() if comment else "")
        key = _resource_dir(activity, image).rsplit(".", 1)[0]
        yield BoardItem(activity, key, image, title.strip(), body.strip(), KINDS[activity])


def parse_readme(text: str) -> dict[str, Credit]:
    """README blocks ("Copyright:/Source:/License:/Files:") -> file path (relative to the README) -> credit."""
    out: dict[str, Credit] = {}
    for block in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        files: list[str] = []
        in_files = False
        for line in block.splitlines():
            key, sep, value = line.partition(":")
            if sep and key.strip() in ("Copyright", "Source", "License", "Licence", "Author") and not in_files:
                fields[key.strip().lower().replace("licence", "license")] = value.strip()
            elif line.strip().lower().startswith("files:"):
                in_files = True
            elif in_files and line.strip():
                files.append(line.strip())
        for f in files:
            out[f] = Credit(
                fields.get("source", ""), fields.get("license", ""), fields.get("copyright", fields.get("author", ""))
            )
    return out
