"""Corpus build throughput per source (images normalised and sharded per second).

    .venv/bin/python benchmarks/data_build.py [--cache .mofi/cache] [--limit 300] [--workers 2]

Needs `mofi data fetch`. Builds up to --limit pairs of every corpus source into a temporary folder
and prints one JSON line per source: pairs kept, rejects, seconds, pairs/s.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

from mofi.objstore import ObjectStore
from mofi.settings import load_settings
from mofi_platform.databuild.build import build_corpus
from mofi_platform.databuild.extractors import EXTRACTORS
from mofi_platform.databuild.fetch import unpacked_dir


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cache", default=None)
    ap.add_argument("--limit", type=int, default=300)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    settings = load_settings()
    cache = args.cache or settings.data.cache_dir
    store = ObjectStore(settings.s3)
    with tempfile.TemporaryDirectory() as out:
        for source in EXTRACTORS:
            t0 = time.perf_counter()
            rep = build_corpus(
                store,
                out,
                lambda k: unpacked_dir(cache, k),
                sources=[source],
                limit_per_source=args.limit,
                max_pixels=settings.data.max_pixels,
                image_size=settings.data.image_size,
                shard_size=settings.data.shard_size,
                workers=args.workers,
            )[0]
            secs = time.perf_counter() - t0
            print(
                json.dumps(
                    {
                        "source": source,
                        "kept": rep.kept,
                        "rejected": sum(rep.rejected.values()),
                        "seconds": round(secs, 1),
                        "pairs_per_s": round(rep.selected / secs, 1),
                        "workers": args.workers,
                    }
                ),
                flush=True,
            )


if __name__ == "__main__":
    main()
