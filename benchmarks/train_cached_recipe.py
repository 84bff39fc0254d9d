"""The cached-feature recipe (``frozen_stages``) against the frozen tower it starts from, and chance.

For each setting (split point, input size, views, steps, batch, learning rates) and seed: one
``mofi train`` run in this process (building the snapshot's feature cache on first use, reusing
it after), then every benchmark is evaluated with the project's evaluation. Every table row says
next to the model's mAP the frozen ImageNet EfficientNet-Lite0 baseline at the same input size and
the chance level (mean mAP of random Gaussian embeddings over 10 draws), plus the class loss at
the start and end of training against its chance level (ln(C - 1) + s*m, the loss when every
cosine is equal) and the last validation-split mAP the trainer logged (what settings are picked
by; never the benchmark).

    .venv/bin/python benchmarks/train_cached_recipe.py \\
        --snapshot .mofi/tux/i2e/snapshots/tuxpaint-val10/manifest.json \\
        --benchmark .mofi/tux/benchmark --benchmark /work/main/.mofi/data/benchmark \\
        --setting k=6,size=224,views=4,steps=200,batch=32,lr=1e-3,tower=0.3 --seeds 0,1,2 --out reports/cached

Settings (S3 endpoint, credentials) come from MOFI_* variables as everywhere else; local paths work
for the snapshot and the checkpoint folder. Writes ``<out>/results.json`` and prints one JSON line
per row.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

#: Setting key -> ``mofi train`` option.
KEYS = {
    "k": "frozen_stages",
    "size": "image_size",
    "views": "cache_views",
    "steps": "steps",
    "batch": "batch_size",
    "lr": "lr",
    "tower": "tower_lr_scale",
    "recipe": "recipe",
    "warmup": "warmup_steps",
}


def parse_setting(text: str) -> dict[str, object]:
    pairs = dict(item.split("=", 1) for item in text.split(","))
    unknown = set(pairs) - set(KEYS)
    if unknown:
        raise SystemExit(f"unknown setting keys {sorted(unknown)}; known: {sorted(KEYS)}")
    from mofi_platform.training.config import option_fields

    types = {name: hint for name, _, hint in option_fields()}
    return {KEYS[k]: types[KEYS[k]](v) for k, v in pairs.items()}


def chance_map(bench, dim: int = 256, draws: int = 10) -> float:
    import numpy as np

    from mofi_platform.training.evaluation import average_precisions

    rng = np.random.default_rng(0)
    return float(np.mean([average_precisions(rng.normal(size=(len(bench.images), dim)), bench.labels).mean()
                          for _ in range(draws)]))  # fmt: skip


def main() -> None:
    from mofi.objstore import ObjectStore
    from mofi.settings import load_settings
    from mofi_platform.training.baselines import imagenet_effnet_lite0_embedder
    from mofi_platform.training.config import TrainConfig
    from mofi_platform.training.evaluation import embed_benchmark, evaluate_embeddings, load_benchmark
    from mofi_platform.training.feature_cache import FeatureCache, cache_uri, validation_map
    from mofi_platform.training.inference import EmbeddingModel
    from mofi_platform.training.models import create_model_and_transforms
    from mofi_platform.training.trainer import load_snapshot, train

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--snapshot", required=True)
    p.add_argument("--benchmark", action="append", required=True, help="repeatable")
    p.add_argument("--setting", action="append", required=True, help="k=,size=,views=,steps=,batch=,lr=,tower=")
    p.add_argument("--seeds", default="0")
    p.add_argument("--model", default="mofi-effnet-lite0-minilm")
    p.add_argument("--context-length", type=int, default=16)
    p.add_argument("--checkpoint-dir", default=".mofi/runs/cached-recipe")
    p.add_argument("--out", default="reports/cached-recipe")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")

    settings = load_settings()
    store = ObjectStore(settings.s3)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    benches = [load_benchmark(b) for b in args.benchmark]
    chance = {str(b.root): chance_map(b) for b in benches}
    frozen: dict[tuple[str, int], float] = {}
    rows = []
    for text in args.setting:
        options = parse_setting(text)
        for seed in [int(s) for s in args.seeds.split(",")]:
            cfg = TrainConfig.from_options(
                {
                    "snapshot": args.snapshot,
                    "run_name": f"{text.replace('=', '').replace(',', '-')}-s{seed}",
                    "model": args.model,
                    "recipe": "multitask",
                    "context_length": args.context_length,
                    "seed": seed,
                    "checkpoint_dir": args.checkpoint_dir,
                    **options,
                },
                settings,
            )
            cfg.checkpoint_every = max(1, cfg.steps // 4)  # validation mAP four times per run
            snapshot = load_snapshot(store, cfg.snapshot)
            cached_before = store.exists(cache_uri(cfg, snapshot)) if cfg.frozen_stages else None
            start, cpu = time.perf_counter(), time.process_time()
            result = train(cfg, settings.s3)
            seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
            model = EmbeddingModel.load(result.checkpoint, settings.s3)
            losses = [m["class_loss"] for m in result.metrics]
            n_classes = len(snapshot.classes)
            row = {
                "setting": text,
                "seed": seed,
                "train_seconds": round(seconds, 1),
                "train_cpu_seconds": round(cpu, 1),  # the machine is shared: CPU time of this process too
                "cache_built_in_run": None if cached_before is None else not cached_before,
                "class_loss_first5": sum(losses[:5]) / 5,
                "class_loss_last5": sum(losses[-5:]) / 5,
                "class_loss_chance": math.log(n_classes - 1) + cfg.loss.cosface_scale * cfg.loss.cosface_margin,
                "val_map": result.metrics[-1].get("val_map"),
                "val_map_frozen": None,
                "checkpoint": result.checkpoint,
                "benchmarks": {},
            }
            if cfg.frozen_stages:  # the frozen tower's pooled features on the same validation images
                cache = FeatureCache.from_bytes(store.get_bytes(cache_uri(cfg, snapshot)))
                tower, _, _ = create_model_and_transforms(cfg.model, pretrained_towers=True, image_size=cfg.image_size)
                row["val_map_frozen"] = validation_map(tower, cfg.frozen_stages, cache, project=False)
            size = cfg.image_size or 224
            for bench in benches:
                key = (str(bench.root), size)
                if key not in frozen:
                    emb = embed_benchmark(bench, imagenet_effnet_lite0_embedder(size))
                    frozen[key] = evaluate_embeddings(bench, emb)["map"]
                res = evaluate_embeddings(bench, embed_benchmark(bench, model.embed_images))
                row["benchmarks"][str(bench.root)] = {
                    "map": res["map"],
                    "frozen_map_same_size": frozen[key],
                    "chance_map": chance[str(bench.root)],
                    "map_per_domain": res["map_per_domain"],
                }
            rows.append(row)
            print(json.dumps(row), flush=True)
            (out / "results.json").write_text(json.dumps({"snapshot": args.snapshot, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
