"""Scorer verdicts with entity texts from NER's vector table versus its own text tower, on real pairs.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/scorer_text_table.py --corpus .mofi/data/shards/ \\
        --checkpoint <lit-bootstrap.pt> --threshold T [--pairs 2000]

The first ``--pairs`` corpus pairs (seeded shuffle) go through NER (full KB and its table) as the
stage would send them; each image is embedded once, and every candidate's "name: description" text
both ways: by the scorer's text tower, and from the table (:mod:`mofi_platform.services.scorer.text_table`).
Reported: the share of candidate verdicts (kept / dropped at ``--threshold``) that agree, the largest
score difference, how many texts the table served, and the CPU seconds per text of each way.
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

from mofi.settings import load_settings  # noqa: E402
from mofi_platform.services.common.images import decode_image  # noqa: E402
from mofi_platform.services.ner.extractor import Extractor  # noqa: E402
from mofi_platform.services.scorer.app import load_model, load_scorer  # noqa: E402
from mofi_platform.services.scorer.scoring import entity_text  # noqa: E402

from _inputs import corpus_samples  # noqa: E402  (benchmarks/, the script's own folder)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", required=True, help="Corpus shard prefix: a local folder or s3://bucket/prefix/.")
    ap.add_argument("--checkpoint", required=True, help="Scorer checkpoint (local path or s3:// URI).")
    ap.add_argument("--threshold", type=float, required=True)
    ap.add_argument("--pairs", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(1)  # as the stage runs
    settings = load_settings()
    samples = corpus_samples(args.corpus, args.seed, args.pairs)
    extractor = Extractor.from_settings(settings)
    model = load_model(settings, args.checkpoint)
    table = load_scorer(settings, model).text_table
    if table is None:
        raise SystemExit("the table is not usable with this checkpoint (see the log)")

    images, texts = [], []
    for i in tqdm(range(0, len(samples), 64), desc="NER", unit="batch"):
        chunk = samples[i : i + 64]
        for s, ex in zip(chunk, extractor.extract([s.text for s in chunk])):
            ents = list(dict.fromkeys(entity_text(c.entity.name, c.entity.description) for c in ex.candidates))
            if ents:
                images.append(decode_image(s.image_bytes, settings.scorer.max_image_bytes, settings.data.max_pixels))
                texts.append(ents)
    image_emb = np.concatenate(
        [model.embed_images(images[i : i + 8]) for i in tqdm(range(0, len(images), 8), desc="images", unit="batch")]
    )
    distinct = sorted({t for ts in texts for t in ts}, key=len)
    start = time.process_time()
    own = dict(zip(distinct, model.embed_texts(distinct)))
    own_cpu = time.process_time() - start
    start = time.process_time()
    served = table.lookup(distinct)
    table_cpu = time.process_time() - start
    derived = {t: served.get(t, own[t]) for t in distinct}  # texts the table cannot serve: the tower's, as in the stage

    agree = total = 0
    worst = 0.0
    for vec, ts in zip(image_emb, texts):
        a = np.array([own[t] @ vec for t in ts])
        b = np.array([derived[t] @ vec for t in ts])
        worst = max(worst, float(np.abs(a - b).max()))
        agree += int(((a >= args.threshold) == (b >= args.threshold)).sum())
        total += len(ts)
    print(
        json.dumps(
            {
                "pairs": len(samples),
                "pairs_with_candidates": len(texts),
                "candidate_verdicts": total,
                "verdict_agreement": round(agree / max(total, 1), 5),
                "max_score_difference": round(worst, 6),
                "distinct_texts": len(distinct),
                "served_by_table": len(served),
                "text_tower_cpu_s_per_text": round(own_cpu / len(distinct), 5),
                "table_cpu_s_per_text": round(table_cpu / max(len(served), 1), 6),
                "threshold": args.threshold,
                "load_avg_1m_end": round(os.getloadavg()[0], 2),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
