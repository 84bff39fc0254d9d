"""The development retrieval benchmark in the GPR1200 layout, in two domains, plus a zero-shot view.

Why these two domains: retrieval must find the same *entity* drawn by someone else. (a) The same emoji
by four designers whose sets are not in the corpus (Twemoji, Fluent Emoji Flat, Noto v1, Firefox OS),
matched by code point; (b) the same constellation drawn by different sky cultures in Stellarium (the
artworks are kept out of the corpus). Files are ``{class}_{name}.png``; ``classes.json`` (class ->
name, description, and the class's knowledge-base entity id, which tells evaluation whether a class is
one the model trained on) is the zero-shot view and ``domains.json`` says which domain a class belongs to.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from mofi_platform.databuild.images import Rejected, normalize_image
from mofi_platform.databuild.kb_sources import constellation_id, emoji_id

__all__ = ["BenchmarkStats", "EMOJI_SETS", "emoji_drawings", "constellation_drawings", "write_benchmark", "Drawing"]

#: source key -> file-name tag of each emoji designer set.
EMOJI_SETS = {"twemoji": "twemoji", "fluent-flat": "fluent", "noto-v1": "notov1", "fxemoji": "fxemoji"}
MIN_PER_CLASS = 4


@dataclass(frozen=True)
class Drawing:
    cls: str  # class key: no underscore (the GPR1200 file name splits on the first one)
    name: str  # image name within the class
    data: bytes
    is_svg: bool
    class_name: str
    description: str
    domain: str
    entity: str  # the knowledge-base id of the class's entity (kb_sources names them alike)


@dataclass
class BenchmarkStats:
    classes: Counter = field(default_factory=Counter)  # domain -> classes kept
    images: Counter = field(default_factory=Counter)  # domain -> images kept
    rejected: Counter = field(default_factory=Counter)  # reason -> count


def _iconify_svg(icons: dict, name: str) -> bytes | None:
    """An Iconify icon as a standalone SVG document (aliases resolved to their parent icon)."""
    alias = icons.get("aliases", {}).get(name)
    icon = icons["icons"].get(alias["parent"] if alias else name)
    if icon is None:
        return None
    w, h = icon.get("width", icons.get("width", 16)), icon.get("height", icons.get("height", 16))
    left, top = icon.get("left", 0), icon.get("top", 0)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" width="{w}" '
        f'height="{h}" viewBox="{left} {top} {w} {h}">{icon["body"]}</svg>'
    ).encode()


def _name_to_code(dirs: Callable[[str], Path]) -> dict[str, str]:
    """Icon name -> lower-case code point sequence, from the sets that publish chars.json and the Unicode
    names in emoji-datasource. Short names are not used: fxemoji's "up" is a hand, Unicode's "up" a button."""
    table: dict[str, str] = {}
    for e in json.loads((dirs("emoji-datasource") / "emoji.json").read_text(encoding="utf-8")):
        if e.get("name"):
            table.setdefault(
                re.sub(r"[^a-z0-9]+", "-", e["name"].lower()).strip("-"), e["unified"].lower().replace("-fe0f", "")
            )
    for key in ("twemoji", "fluent-flat"):
        chars = json.loads((dirs(key) / "chars.json").read_text(encoding="utf-8"))
        for code, name in chars.items():
            table[name] = code.lower().replace("-fe0f", "")
    return table


def emoji_drawings(dirs: Callable[[str], Path], max_classes: int) -> Iterator[Drawing]:
    """Emoji present in all four designer sets, ``max_classes`` of them chosen by a stable hash."""
    names = _name_to_code(dirs)
    meta = {
        e["unified"].lower().replace("-fe0f", ""): e
        for e in json.loads((dirs("emoji-datasource") / "emoji.json").read_text(encoding="utf-8"))
    }
    per_code: dict[str, dict[str, bytes]] = {}
    for key, tag in EMOJI_SETS.items():
        icons = json.loads((dirs(key) / "icons.json").read_text(encoding="utf-8"))
        for name in [*icons["icons"], *icons.get("aliases", {})]:
            code = names.get(name)
            if code and tag not in per_code.get(code, {}):
                svg = _iconify_svg(icons, name)
                if svg:
                    per_code.setdefault(code, {})[tag] = svg
    complete = [c for c, sets in per_code.items() if len(sets) == len(EMOJI_SETS) and c in meta]
    complete.sort(key=lambda c: hashlib.sha1(c.encode()).hexdigest())
    for code in complete[:max_classes]:
        e = meta[code]
        desc = f"emoji: {e.get('category', '')} / {e.get('subcategory', '')}"
        for tag, svg in sorted(per_code[code].items()):
            name = (e.get("name") or code).lower()
            yield Drawing(f"emoji-{code}", tag, svg, True, name, desc, "emoji", emoji_id(e["unified"]))


def _fab_rows(path: Path) -> Iterator[tuple[str, str]]:
    for line in path.open(encoding="utf-8", errors="replace"):
        parts = line.split()
        if len(parts) >= 2 and not line.startswith("#"):
            yield parts[0], parts[1]


def constellation_drawings(dirs: Callable[[str], Path]) -> Iterator[Drawing]:
    """Each IAU constellation as drawn by every sky culture that uses the IAU abbreviation for it."""
    cultures = dirs("stellarium") / "usr/share/stellarium/skycultures"
    iau = {}
    for line in (cultures / "western/constellation_names.eng.fab").open(encoding="utf-8"):
        parts = line.split("\t")
        if len(parts) >= 2:
            iau[parts[0].strip()] = parts[1].strip().strip('"')
    for culture in sorted(p for p in cultures.iterdir() if (p / "constellationsart.fab").exists()):
        for abbr, file in _fab_rows(culture / "constellationsart.fab"):
            image = culture / file
            if abbr in iau and image.exists():
                yield Drawing(
                    f"sky-{abbr}",
                    culture.name,
                    image.read_bytes(),
                    False,
                    iau[abbr],
                    f"constellation {iau[abbr]} ({abbr})",
                    "sky",
                    constellation_id(abbr),
                )


def write_benchmark(drawings: Iterator[Drawing], out_dir: Path, *, max_pixels: int, image_size: int) -> BenchmarkStats:
    """Normalise, drop duplicate artworks (one culture copying another's), keep classes with >= 4 images."""
    stats = BenchmarkStats()
    by_class: dict[str, list[tuple[Drawing, bytes]]] = {}
    seen: set[str] = set()
    for d in drawings:
        try:
            img = normalize_image(d.data, is_svg=d.is_svg, max_pixels=max_pixels, image_size=image_size)
        except Rejected as r:
            stats.rejected[r.reason] += 1
            continue
        digest = hashlib.sha256(img.data).hexdigest()
        if digest in seen:
            stats.rejected["duplicate_artwork"] += 1
            continue
        seen.add(digest)
        by_class.setdefault(d.cls, []).append((d, img.data))
    out_dir.mkdir(parents=True, exist_ok=True)
    classes, domains = {}, {}
    for cls, items in sorted(by_class.items()):
        if len(items) < MIN_PER_CLASS:
            stats.rejected["class_below_4_images"] += len(items)
            continue
        first = items[0][0]
        classes[cls] = {"name": first.class_name, "description": first.description, "entity": first.entity}
        domains[cls] = first.domain
        stats.classes[first.domain] += 1
        for d, data in items:
            (out_dir / f"{cls}_{d.name}.png").write_bytes(data)
            stats.images[d.domain] += 1
    (out_dir / "classes.json").write_text(json.dumps(classes, indent=1, ensure_ascii=False) + "\n")
    (out_dir / "domains.json").write_text(json.dumps(domains, indent=1) + "\n")
    return stats
