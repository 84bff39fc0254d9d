"""Entities by depiction count in a built corpus: how many images, from how many sources, name each entity.

    .venv/bin/python benchmarks/data_depictions.py --corpus .mofi/fullbuild/shards/ [--kb .mofi/data/kb/kb.jsonl]

Why a proxy: the I2E labels come from NER + linking + the CLIP scorer, which take hours on two cores
for the whole corpus. This counts what the corpus can give at most by alias matching alone
(`mofi_platform.databuild.depictions.entity_of`, the rule the dense `--subset` of `mofi data build`
uses). It over-counts where the linker or the scorer would drop a label (UI icons such as "settings"
link to the WordNet sense of the word) and under-counts texts that name an entity only in a later clause.

Prints one JSON object: pairs, pairs with an entity, entities by image count, entities with >= 10
images from >= 3 sources (all of them, those whose KB type is a physical thing, ``CONCRETE``, and by
type), pairs and linked pairs per source, and the most depicted entities.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter, defaultdict

from tqdm import tqdm

from mofi.kb import KnowledgeBase
from mofi.objstore import ObjectStore
from mofi.settings import load_settings
from mofi.tarshard import unpack
from mofi_platform.databuild.corpus import list_corpus_shards
from mofi_platform.databuild.depictions import CONCRETE, entity_of

BINS = ((1, 1), (2, 2), (3, 4), (5, 9), (10, 19), (20, 49), (50, 10**9))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", required=True, help="shards prefix (s3://... or a folder)")
    ap.add_argument("--kb", default=".mofi/data/kb/kb.jsonl")
    ap.add_argument("--min-images", type=int, default=10)
    ap.add_argument("--min-sources", type=int, default=3)
    args = ap.parse_args()
    kb = KnowledgeBase.load(args.kb)
    store = ObjectStore(load_settings().s3)
    images: Counter[str] = Counter()
    sources: defaultdict[str, set[str]] = defaultdict(set)
    pairs, linked = Counter(), Counter()
    for uri in tqdm(list_corpus_shards(store, args.corpus), desc="shards", unit="shard"):
        for _, parts in unpack(store.get_bytes(uri)):
            meta = json.loads(parts["json"])
            pairs[meta["source"]] += 1
            eid = entity_of(kb, meta["text"])
            if eid is None:
                continue
            linked[meta["source"]] += 1
            images[eid] += 1
            sources[eid].add(meta["source"])
    dense = [e for e, n in images.items() if n >= args.min_images and len(sources[e]) >= args.min_sources]
    dense_types = Counter(kb.get(e).type for e in dense)
    print(
        json.dumps(
            {
                "corpus": args.corpus,
                "kb": args.kb,
                "pairs": sum(pairs.values()),
                "pairs_with_entity": sum(linked.values()),
                "entities": len(images),
                "entities_by_images": {
                    f"{lo}-{hi}" if hi < 10**9 else f">={lo}": sum(lo <= n <= hi for n in images.values())
                    for lo, hi in BINS
                },
                f"entities_>={args.min_images}_images_>={args.min_sources}_sources": len(dense),
                "of_which_concrete_types": sum(n for t, n in dense_types.items() if t in CONCRETE),
                "of_which_by_type": dict(dense_types.most_common()),
                "per_source": {s: {"pairs": pairs[s], "with_entity": linked[s]} for s in sorted(pairs)},
                "most_depicted": [
                    {"id": e, "name": kb.get(e).name, "images": n, "sources": len(sources[e])}
                    for e, n in images.most_common(25)
                ],
            },
            indent=1,
            ensure_ascii=False,
        )
    )


if __name__ == "__main__":
    main()
