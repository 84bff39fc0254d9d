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

The seed paper's open checks on one snapshot (recipes, lambda, entity text, entity frequency; rows
in ``ABLATION``, each on top of the demo's recipe), three seeds per row, mean ± sd per row in
``<out>/results.md``:

    .venv/bin/python benchmarks/train_cached_recipe.py --ablation --seeds 0,1,2 \\
        --snapshot s3://mofi-i2e/snapshots/<version>/manifest.json --benchmark .mofi/data/benchmark

Settings (S3 endpoint, credentials) come from MOFI_* variables as everywhere else; local paths work
for the snapshot and the checkpoint folder. Writes ``<out>/results.json`` and ``<out>/results.md``
and prints one JSON line per run; rerun with more seeds, it keeps the runs ``results.json`` holds.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import time
import typing
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
    "lambda": "class_weight",
    "text": "entity_text",
    "top": "top_classes",
    "holdout": "holdout_classes",
    "embedding": "embedding",
}

#: The full demo's recipe (``pipelines/demo/plans.py``), where every ``--ablation`` row starts.
DEMO_BASE = "k=6,size=128,views=2,steps=300,batch=64,lr=1e-3,tower=0.3,warmup=20,embedding=pooled_projection"

#: The seed paper's open checks (``--ablation``), each row a setting on top of ``--base``: the recipes
#: (CosFace alone, CLIP-style on the raw alt-text, contrastive on the entity text, multi-task at three
#: lambdas), entity names without descriptions, the most frequent quarter / half of the entities, and
#: the projection alone as the served embedding.
ABLATION = (
    ("supervised", "recipe=supervised"),
    ("contrastive, raw alt-text", "recipe=contrastive"),
    ("contrastive, entity text", "recipe=multitask,lambda=0"),
    ("multitask lambda 0.3", "recipe=multitask,lambda=0.3"),
    ("multitask lambda 0.5", "recipe=multitask,lambda=0.5"),
    ("multitask lambda 0.7", "recipe=multitask,lambda=0.7"),
    ("multitask 0.5, names only", "recipe=multitask,lambda=0.5,text=name"),
    ("multitask 0.5, top 25% entities", "recipe=multitask,lambda=0.5,top=0.25"),
    ("multitask 0.5, top 50% entities", "recipe=multitask,lambda=0.5,top=0.5"),
    ("multitask 0.5, projection embedding", "recipe=multitask,lambda=0.5,embedding=projection"),
)


def parse_setting(text: str) -> dict[str, object]:
    pairs = dict(item.split("=", 1) for item in text.split(","))
    unknown = set(pairs) - set(KEYS)
    if unknown:
        raise SystemExit(f"unknown setting keys {sorted(unknown)}; known: {sorted(KEYS)}")
    from mofi_platform.training.config import option_fields

    types = {name: hint for name, _, hint in option_fields()}

    def convert(option: str, value: str) -> object:
        hint = types[option]
        args = [a for a in typing.get_args(hint) if a is not type(None)]  # float | None -> float
        return (args[0] if args else hint)(value)

    return {KEYS[k]: convert(KEYS[k], v) for k, v in pairs.items()}


def summarise(rows: list[dict]) -> str:
    """Markdown: one line per setting, mean ± sd over its seeds, every benchmark beside its frozen
    baseline at the same input size and its chance level."""
    import numpy as np

    def stat(values: list[float]) -> str:
        return f"{np.mean(values):.3f} ± {np.std(values, ddof=1) if len(values) > 1 else 0:.3f}"

    benches = list(rows[0]["benchmarks"]) if rows else []
    head = ["row", "seeds", "val-split mAP (frozen)", "held-out entities mAP (frozen)"]
    head += [f"{Path(b).name}: mAP / frozen / chance" for b in benches]
    lines = ["| " + " | ".join(head + ["class loss last 5 (chance)"]) + " |", "|" + "---|" * (len(head) + 1)]
    for name in dict.fromkeys(r["row"] for r in rows):
        group = [r for r in rows if r["row"] == name]
        cells = [name, str(len(group))]
        vals = [r["val_map"] for r in group if r["val_map"] is not None]
        frozen_val = group[0]["val_map_frozen"]
        cells.append((stat(vals) if vals else "n/a") + (f" ({frozen_val:.3f})" if frozen_val is not None else ""))
        unseen = [r["val_unseen_map"] for r in group if r["val_unseen_map"] is not None]
        frozen_unseen = group[0]["val_unseen_map_frozen"]
        cells.append((stat(unseen) if unseen else "n/a") + (f" ({frozen_unseen:.3f})" if frozen_unseen else ""))
        for b in benches:
            maps = [r["benchmarks"][b]["map"] for r in group]
            ref = group[0]["benchmarks"][b]
            cells.append(f"{stat(maps)} / {ref['frozen_map_same_size']:.3f} / {ref['chance_map']:.3f}")
        losses = [r["class_loss_last5"] for r in group if r["class_loss_last5"] is not None]
        chance = group[0]["class_loss_chance"]
        cells.append((stat(losses) if losses else "n/a") + (f" ({chance:.2f})" if chance is not None else ""))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


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
    p.add_argument("--setting", action="append", default=[], help="k=,size=,..,lambda=,text=,top= (repeatable)")
    p.add_argument("--ablation", action="store_true", help="the ABLATION rows, each on top of --base")
    p.add_argument("--only", default="", help="with --ablation: only rows whose name contains this")
    p.add_argument("--base", default=DEMO_BASE, help="setting every --ablation row starts from")
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
    plan = [(text, text) for text in args.setting]
    if args.ablation:
        plan += [(name, f"{args.base},{extra}") for name, extra in ABLATION if args.only in name]
    if not plan:
        raise SystemExit("nothing to run: give --setting or --ablation")
    done = out / "results.json"  # rows of an earlier invocation on the same snapshot are kept, not rerun
    prior = json.loads(done.read_text()) if done.exists() else {}
    rows = prior.get("rows", []) if prior.get("snapshot") == args.snapshot else []
    for name, text in plan:
        options = parse_setting(text)
        for seed in [int(s) for s in args.seeds.split(",")]:
            if any(r["setting"] == text and r["seed"] == seed for r in rows):
                continue
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
            snapshot, unseen = load_snapshot(store, cfg.snapshot), None
            if cfg.holdout_classes > 0:
                snapshot, unseen = snapshot.hold_out(cfg.holdout_classes)
            if cfg.top_classes < 1:
                snapshot = snapshot.most_frequent(cfg.top_classes)
            cached_before = store.exists(cache_uri(cfg, snapshot, unseen)) if cfg.frozen_stages else None
            start, cpu = time.perf_counter(), time.process_time()
            result = train(cfg, settings.s3)
            seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
            model = EmbeddingModel.load(result.checkpoint, settings.s3)
            losses = [m["class_loss"] for m in result.metrics] if cfg.loss.uses_classes else []
            n_classes = len(snapshot.classes)
            row = {
                "row": name,
                "setting": text,
                "seed": seed,
                "train_seconds": round(seconds, 1),
                "train_cpu_seconds": round(cpu, 1),  # the machine is shared: CPU time of this process too
                "cache_built_in_run": None if cached_before is None else not cached_before,
                "class_loss_first5": sum(losses[:5]) / 5 if losses else None,
                "class_loss_last5": sum(losses[-5:]) / 5 if losses else None,
                "class_loss_chance": (
                    math.log(n_classes - 1) + cfg.loss.cosface_scale * cfg.loss.cosface_margin if losses else None
                ),
                "val_map": result.metrics[-1].get("val_map"),
                "val_map_frozen": None,
                "val_unseen_map": result.metrics[-1].get("val_unseen_map"),
                "val_unseen_map_frozen": None,
                "checkpoint": result.checkpoint,
                "benchmarks": {},
            }
            if cfg.frozen_stages:  # the frozen tower's pooled features on the same validation images
                cache = FeatureCache.from_bytes(store.get_bytes(cache_uri(cfg, snapshot, unseen)))
                tower, _, _ = create_model_and_transforms(cfg.model, pretrained_towers=True, image_size=cfg.image_size)
                row["val_map_frozen"] = validation_map(tower, cfg.frozen_stages, cache, "pooled")
                row["val_unseen_map_frozen"] = validation_map(tower, cfg.frozen_stages, cache, "pooled", split="unseen")
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
            (out / "results.md").write_text(summarise(rows))
    print(summarise(rows))


if __name__ == "__main__":
    main()
