"""`mofi produce` throughput: corpus pairs per second into a real broker (local stack on free ports).

    .venv/bin/python benchmarks/data_produce.py [--corpus DIR_OR_S3_PREFIX] [--limit 2000]

Without --corpus it sends the committed fixture pairs repeatedly (new pair ids per round) so it
runs from a clean clone. Starts a throw-away Tansu + SeaweedFS stack, prints one JSON line.
"""

from __future__ import annotations

import argparse
import itertools
import json
import tempfile
from dataclasses import replace
from pathlib import Path

from mofi.kafka import ensure_topics, make_producer
from mofi.objstore import ObjectStore
from mofi.settings import Settings
from mofi.stack import Stack, free_stack_ports
from mofi_platform.databuild.corpus import iter_corpus
from mofi_platform.databuild.fixtures import load_fixture_pairs
from mofi_platform.databuild.produce import produce_pairs


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", default=None)
    ap.add_argument("--limit", type=int, default=2000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as root:
        s = Settings.for_local_stack(Path(root) / "stack", **free_stack_ports())
        stack = Stack(s)
        stack.up()
        try:
            store = ObjectStore(s.s3)
            if args.corpus:
                samples = iter_corpus(store, args.corpus)
            else:
                base = load_fixture_pairs()
                samples = (
                    replace(p, pair_id=f"{n:08x}{p.pair_id[8:]}")
                    for n, p in enumerate(itertools.chain.from_iterable(itertools.repeat(base)))
                )
            ensure_topics(s.kafka, [s.kafka.pairs_topic])
            producer = make_producer(s.kafka)
            try:
                stats = produce_pairs(samples, producer, s.kafka, s.s3, store, limit=args.limit)
            finally:
                producer.close()
        finally:
            stack.down()
    print(
        json.dumps(
            {
                "pairs": stats.sent,
                "inline": stats.inline,
                "by_reference": stats.by_reference,
                "mb": round(stats.bytes / 1e6, 2),
                "seconds": round(stats.seconds, 2),
                "pairs_per_s": round(stats.sent / stats.seconds, 1),
                "corpus": args.corpus or "fixture (repeated)",
            }
        )
    )


if __name__ == "__main__":
    main()
