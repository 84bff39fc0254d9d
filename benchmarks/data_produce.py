"""`mofi produce` throughput: corpus pairs per second into a real broker (local stack on free ports).

    .venv/bin/python benchmarks/data_produce.py [--corpus DIR_OR_S3_PREFIX] [--limit 2000]
    .venv/bin/python benchmarks/data_produce.py --webdataset 'DIR/{00000..00009}.tar'
    .venv/bin/python benchmarks/data_produce.py --synthetic-webdataset 2000

Without --corpus it sends the committed fixture pairs repeatedly (new pair ids per round) so it
runs from a clean clone. --webdataset reads img2dataset shards through the `mofi produce --webdataset`
source (tar streaming, caption and image checks, progress bookkeeping included); --synthetic-webdataset N
first writes N 256 px JPEGs with captions as img2dataset would (1,000 per shard) and reads those.
Starts a throw-away Tansu + SeaweedFS stack, prints one JSON line.
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
from mofi_platform.databuild import ingest
from mofi_platform.databuild.corpus import iter_corpus
from mofi_platform.databuild.fixtures import load_fixture_pairs
from mofi_platform.databuild.produce import produce_acked


def write_synthetic_shards(folder: Path, count: int, per_shard: int = 1000) -> str:
    """``count`` img2dataset-style samples (256 px JPEG, caption, metadata); returns the brace pattern."""
    import io

    import numpy as np
    import webdataset as wds
    from PIL import Image

    rng = np.random.default_rng(0)
    base = np.linspace(0, 255, 256, dtype=np.float32)
    shards = (count + per_shard - 1) // per_shard
    for s in range(shards):
        with wds.TarWriter(str(folder / f"{s:05d}.tar")) as sink:
            for k in range(s * per_shard, min(count, (s + 1) * per_shard)):
                tint = rng.integers(0, 256, 3)
                pixels = (base[None, :, None] * 0.5 + base[:, None, None] * 0.3 + tint * 0.2).repeat(3, axis=2)
                pixels = pixels[:, :, :3] + rng.normal(0, 12, (256, 256, 3))
                buf = io.BytesIO()
                Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(buf, format="JPEG", quality=90)
                key = f"{s:05d}{k:04d}"
                caption = f"A photo of a red bus number {k} parked near the Eiffel Tower in Paris."
                sink.write({"__key__": key, "jpg": buf.getvalue(), "txt": caption, "json": {"url": f"https://x/{k}"}})
    return str(folder / f"{{00000..{shards - 1:05d}}}.tar")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", default=None)
    ap.add_argument("--webdataset", default=None)
    ap.add_argument("--synthetic-webdataset", type=int, default=0)
    ap.add_argument("--limit", type=int, default=2000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as root:
        s = Settings.for_local_stack(Path(root) / "stack", **free_stack_ports())
        stack = Stack(s)
        stack.up()
        try:
            store = ObjectStore(s.s3)
            bad = ingest.BadItems()
            spec = args.webdataset or ""
            if args.synthetic_webdataset:
                (Path(root) / "shards").mkdir()
                spec = write_synthetic_shards(Path(root) / "shards", args.synthetic_webdataset)
            if spec:
                checks = ingest.Checks(max_text_chars=s.ner.max_text_chars, max_pixels=s.data.max_pixels)
                source = ingest.WebDatasetSource(spec, "bench", "unknown", checks, store)
                progress = ingest.Progress(Path(root) / "progress.json", "bench")
                items = ingest.stream(source, progress, bad)
            elif args.corpus:
                items = ((p, None) for p in iter_corpus(store, args.corpus))
            else:
                base = load_fixture_pairs()
                items = (
                    (replace(p, pair_id=f"{n:08x}{p.pair_id[8:]}"), None)
                    for n, p in enumerate(itertools.chain.from_iterable(itertools.repeat(base)))
                )
            ensure_topics(s.kafka, [s.kafka.pairs_topic])
            producer = make_producer(s.kafka)
            try:
                stats = produce_acked(items, producer, s.kafka, s.s3, store, limit=args.limit)
            finally:
                producer.close()
        finally:
            stack.down()
    label = spec or args.corpus or "fixture (repeated)"
    if args.synthetic_webdataset:
        label = f"synthetic img2dataset shards ({args.synthetic_webdataset} pairs)"
    print(
        json.dumps(
            {
                "pairs": stats.sent,
                "inline": stats.inline,
                "by_reference": stats.by_reference,
                "mb": round(stats.bytes / 1e6, 2),
                "seconds": round(stats.seconds, 2),
                "pairs_per_s": round(stats.sent / stats.seconds, 1),
                "bad_items": bad.total(),
                "corpus": label,
            }
        )
    )


if __name__ == "__main__":
    main()
