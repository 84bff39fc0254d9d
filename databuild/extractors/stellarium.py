"""Stellarium deep-sky photos and planet/moon textures, worded by catalogue ids, common names and credits.

Constellation artwork is deliberately not extracted: it is the benchmark's sky domain and must stay
out of the corpus.
"""

from __future__ import annotations

import configparser
import re
from collections.abc import Callable, Iterator
from pathlib import Path

from mofi_platform.databuild.extractors.gcompris import commons_text
from mofi_platform.databuild.pairs import RawPair

__all__ = ["stellarium_pairs", "designation"]

LICENCE = "GPL-2.0-or-later (Stellarium); photo credit in the text metadata"
_CATALOGUES = {
    "m": "M",
    "n": "NGC",
    "ngc": "NGC",
    "ic": "IC",
    "b": "B",
    "barnard": "B",
    "sh": "SH2",
    "u": "UGC",
    "p": "PGC",
    "rcw": "RCW",
}
_NAMES = re.compile(r'^(?P<cat>[A-Z0-9]+)\s+(?P<num>\S+)\s+_\("(?P<name>[^"]+)"\)')
_TILE = re.compile(r'"(?P<key>imageUrl|infoUrl|short)"\s*:\s*"(?P<value>[^"]*)"', re.I)


def designation(stem: str) -> str | None:
    """``m1dumont`` -> ``M 1``, ``ngc7293`` -> ``NGC 7293``, ``barnard142-vasey`` -> ``B 142``."""
    m = re.match(r"^([a-z]+?)-?(\d+)", stem.lower())
    if m and m.group(1) in _CATALOGUES:
        return f"{_CATALOGUES[m.group(1)]} {int(m.group(2))}"
    return None


def _common_names(names_dat: Path) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in names_dat.open(encoding="utf-8"):
        if m := _NAMES.match(line):
            out.setdefault(f"{m['cat']} {m['num']}", []).append(m["name"])
    return out


def _tiles(textures_json: str) -> Iterator[dict[str, str]]:
    """textures.json is not strict JSON (``-.97``); each tile starts at "imageCredits", so split there."""
    for chunk in textures_json.split('"imageCredits"')[1:]:
        fields = {m["key"].lower(): m["value"] for m in _TILE.finditer(chunk)}
        if "imageurl" in fields:
            yield fields


def _deep_sky(base: Path) -> Iterator[RawPair]:
    folder = base / "nebulae/default"
    names = _common_names(folder / "names.dat")
    for tile in _tiles((folder / "textures.json").read_text(encoding="utf-8")):
        image = folder / tile["imageurl"]
        if not image.exists():
            continue
        des = designation(image.stem)
        words = [*dict.fromkeys(names.get(des, []) if des is not None else []), des or image.stem.replace("-", " ")]
        if tile.get("infourl"):
            words.append(commons_text(tile["infourl"]))
        if tile.get("short"):
            words.append(f"image: {tile['short']}")
        yield RawPair(
            "stellarium", LICENCE, f"nebulae/default/{image.name}", " - ".join(words), image.read_bytes(), photo=True
        )


def _bodies(base: Path) -> Iterator[RawPair]:
    seen: set[str] = set()
    for ini in ("ssystem_major.ini", "ssystem_minor.ini"):
        cfg = configparser.ConfigParser(strict=False, interpolation=None)
        cfg.read(base / "data" / ini, encoding="utf-8")
        for section in cfg.sections():
            tex, name = cfg[section].get("tex_map", ""), cfg[section].get("name", section)
            image = base / "textures" / tex
            if not tex or tex in seen or not image.exists():
                continue
            seen.add(tex)
            kind = cfg[section].get("type", "body")
            yield RawPair(
                "stellarium", LICENCE, f"textures/{tex}", f"{name} {kind} texture map", image.read_bytes(), photo=True
            )


def stellarium_pairs(dirs: Callable[[str], Path]) -> Iterator[RawPair]:
    base = dirs("stellarium") / "usr/share/stellarium"
    yield from _deep_sky(base)
    yield from _bodies(base)
