"""`mofi kb import`: a knowledge base from a Wikidata JSON dump and from JSONL files in the KB's own format.

Why streamed: ``latest-all.json.gz`` is over 100 GB of JSON once decompressed. Its layout is one JSON
array with one entity per line (every line but the last ends in a comma), so it is read line by line
through the decompressor, each line parsed on its own, and each kept entity written out at once; only
the ids seen so far stay in memory (to drop duplicates).

What is kept of Wikidata: items (``Q`` ids) with an English label and an English description, as
entity ``wd:<Q id>`` with the English aliases, the ids of its instance-of (P31) and subclass-of (P279)
values as ``type`` (statements of deprecated rank left out), and a prior from its sitelink count. The
prior is ``log10(1 + sitelinks) / log10(1 + SITELINKS_FOR_FULL_PRIOR)`` capped at 1, rather than the
raw count, because the linker reads priors as a feature in [0, 1] next to the built-in sources' priors
(GeoNames cities scale population the same way); lookups still order candidates by sitelink count.

Why same-as links on merging: a Wikidata item and a built-in entity can be one concept ("Paris" is
``wd:Q90`` and GeoNames ``geo:2988507``). Where the item carries the built-in entity's identifier
(GeoNames ID P1566, ISO 3166-1 alpha-2 P297), the item becomes an alias of the built-in entity
(``Entity.same_as``), so the concept stays one training class under its established id and gains
the item's names. Identifier matches are exact, so no name-based guessing is needed.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import json
import math
import os
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from tqdm import tqdm

from mofi.kb import Entity, entity_line, kb_version, parse_entity

__all__ = [
    "ImportReport",
    "SITELINKS_FOR_FULL_PRIOR",
    "SAME_AS_PROPERTIES",
    "wikidata_entities",
    "jsonl_entities",
    "import_kb",
]

#: Items with this many sitelinks (the most linked have a few hundred) get prior 1.
SITELINKS_FOR_FULL_PRIOR = 300
#: Wikidata external-id property -> the built-in id namespace its value names.
SAME_AS_PROPERTIES = {"P1566": "geo", "P297": "country"}
_TYPE_PROPERTIES = ("P31", "P279")


@dataclass
class ImportReport:
    """What an import read, kept and skipped, and the KB it wrote."""

    read: Counter = field(default_factory=Counter)  # lines read per input
    kept: Counter = field(default_factory=Counter)  # entities written per source
    skipped: Counter = field(default_factory=Counter)  # reason -> count
    same_as: int = 0
    entities: int = 0
    version: str = ""
    path: str = ""

    def to_dict(self) -> dict:
        return {
            "path": self.path,
            "version": self.version,
            "entities": self.entities,
            "read": dict(self.read),
            "kept": dict(self.kept),
            "skipped": dict(self.skipped),
            "same_as": self.same_as,
        }


def _open_text(path: Path) -> IO[str]:
    opener = {".gz": gzip.open, ".bz2": bz2.open}.get(path.suffix, open)
    return opener(path, "rt", encoding="utf-8")  # type: ignore[operator]


def _values(claims: dict, prop: str) -> list[str]:
    """The non-deprecated values of ``prop``: item ids, or strings for external ids."""
    out = []
    for statement in claims.get(prop, ()):
        snak = statement.get("mainsnak", {})
        if statement.get("rank") == "deprecated" or snak.get("snaktype") != "value":
            continue
        value = snak.get("datavalue", {}).get("value")
        value = value.get("id") if isinstance(value, dict) else value
        if isinstance(value, str) and value not in out:
            out.append(value)
    return out


def wikidata_prior(sitelinks: int) -> float:
    return round(min(1.0, math.log10(1 + sitelinks) / math.log10(1 + SITELINKS_FOR_FULL_PRIOR)), 3)


def wikidata_entity(doc: dict, lang: str = "en") -> tuple[Entity | None, str, list[str]]:
    """``(entity, "", same-as candidate ids)`` for a kept item, else ``(None, reason skipped, [])``."""
    if doc.get("type") != "item" or not str(doc.get("id", "")).startswith("Q"):
        return None, "not_an_item", []
    label = doc.get("labels", {}).get(lang, {}).get("value", "").strip()
    if not label:
        return None, "no_english_label", []
    description = doc.get("descriptions", {}).get(lang, {}).get("value", "").strip()
    if not description:
        return None, "no_english_description", []
    names = [a.get("value", "").strip() for a in doc.get("aliases", {}).get(lang, ())]
    aliases = tuple(dict.fromkeys(a for a in names if a and a != label))
    claims = doc.get("claims") or {}
    types = [q for prop in _TYPE_PROPERTIES for q in _values(claims, prop)]
    links = [f"{ns}:{v}" for prop, ns in SAME_AS_PROPERTIES.items() for v in _values(claims, prop)]
    entity = Entity(
        f"wd:{doc['id']}",
        label,
        aliases,
        description,
        " ".join(dict.fromkeys(types)),
        "wikidata",
        wikidata_prior(len(doc.get("sitelinks") or {})),
    )
    return entity, "", links


def wikidata_entities(path: Path, report: ImportReport) -> Iterator[tuple[Entity, list[str]]]:
    """Kept items of a dump (``.json``, ``.json.gz`` or ``.json.bz2``) with their same-as candidate ids."""
    with _open_text(path) as fh:
        for line in tqdm(fh, desc=f"wikidata {path.name}", unit=" lines", unit_scale=True):
            line = line.strip().rstrip(",")
            if line in ("[", "]", ""):
                continue
            report.read[str(path)] += 1
            try:
                doc = json.loads(line)
            except ValueError:
                report.skipped["malformed_line"] += 1
                continue
            entity, reason, links = wikidata_entity(doc) if isinstance(doc, dict) else (None, "malformed_line", [])
            if entity is None:
                report.skipped[reason] += 1
            else:
                yield entity, links


def jsonl_entities(path: Path, report: ImportReport) -> Iterator[Entity]:
    """Entities of a JSONL file in the KB's own format; a malformed line is an error naming it."""
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(tqdm(fh, desc=path.name, unit=" lines", unit_scale=True), 1):
            if line.strip():
                report.read[str(path)] += 1
                yield parse_entity(path, n, line)


def import_kb(
    out: Path,
    *,
    wikidata: Iterable[Path] = (),
    jsonl: Iterable[Path] = (),
    merge: Path | None = None,
    limit: int = 0,
) -> ImportReport:
    """Write ``out``: the entities of ``merge`` (the built-in KB) first, then the ``jsonl`` files', then the
    dumps' kept items (at most ``limit`` of them when > 0); an id seen before is skipped. Wikidata items
    that name a merged entity by identifier become its aliases. Written to a temp file and renamed, so a
    reader never sees half a KB."""
    report = ImportReport(path=str(out))
    seen: set[str] = set()
    digest = hashlib.sha256()
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=out.name, suffix=".tmp", dir=out.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:

            def write(entity: Entity) -> None:
                if entity.id in seen:
                    report.skipped["duplicate_id"] += 1
                    return
                seen.add(entity.id)
                line = entity_line(entity)
                fh.write(line)
                digest.update(line.encode())
                report.kept[entity.source or "unknown"] += 1
                if entity.same_as and entity.source == "wikidata":
                    report.same_as += 1

            for path in [merge] if merge else []:
                for entity in jsonl_entities(path, report):
                    write(entity)
            merged = set(seen)
            for path in jsonl:
                for entity in jsonl_entities(path, report):
                    write(entity)
            items = 0
            for path in wikidata:
                for entity, links in wikidata_entities(path, report):
                    target = next((t for t in links if t in merged), "")
                    write(Entity(**{**entity.__dict__, "same_as": target}) if target else entity)
                    items += 1
                    if limit and items >= limit:
                        break
                if limit and items >= limit:
                    break
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    report.entities = len(seen)
    report.version = kb_version(digest.hexdigest())
    return report
