"""The MOFI ablation at our scale: frozen ImageNet features vs contrastive-only vs supervised-only vs
multi-task, each trained with the same budget (steps x batch, image size, learning rate, seed) on
one I2E snapshot, all evaluated on one GPR1200-layout benchmark.

    MOFI_S3_ENDPOINT=127.0.0.1:18333 .venv/bin/python benchmarks/train_ablation.py \\
        --snapshot s3://mofi-i2e/snapshots/<version>/manifest.json --benchmark .mofi/data/benchmark \\
        --steps 150 --batch-size 32 --image-size 128 --out reports/ablation

Settings (S3 endpoint, credentials) come from MOFI_* variables / MOFI_CONFIG as everywhere else.
Writes ``<out>/results.json`` (the rows, each with its command), ``<out>/results.md`` (the same rows as
the RESULTS.md table) and ``<out>/curves.png``. The rows in RESULTS.md are committed as
``benchmarks/ablation/results.json``, which the demo report shows. Each row is also reproducible alone
with ``mofi train`` + ``mofi eval`` (printed per row).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

RECIPES = ("contrastive", "supervised", "multitask")


def _row(name: str, res: dict, seconds: float, command: str) -> dict:
    return {
        "row": name,
        "map": res["map"],
        "map_per_domain": res["map_per_domain"],
        "zero_shot_top1": res["zero_shot_top1"],
        "linear_probe_top1": res["linear_probe_top1"],
        "train_seconds": round(seconds, 1),
        "command": command,
    }


def main() -> None:
    from mofi.settings import load_settings
    from mofi_platform.pipelines.report.ablation import markdown_table
    from mofi_platform.training.baselines import imagenet_effnet_lite0_embedder
    from mofi_platform.training.config import TrainConfig
    from mofi_platform.training.curves import plot_training_curves
    from mofi_platform.training.evaluation import embed_benchmark, evaluate_embeddings, load_benchmark
    from mofi_platform.training.inference import EmbeddingModel
    from mofi_platform.training.trainer import train

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--snapshot", required=True)
    p.add_argument("--benchmark", required=True)
    p.add_argument("--model", default="mofi-effnet-lite0-minilm")
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--image-size", type=int, default=128)
    p.add_argument("--context-length", type=int, default=0, help="training text tokens; 0: the config's")
    p.add_argument("--lr", type=float, default=1e-3, help="heads; towers get lr x --tower-lr-scale")
    p.add_argument("--tower-lr-scale", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint-dir", default=None, help="default: s3://<s3.models_bucket>/ablation")
    p.add_argument("--recipes", default=",".join(RECIPES))
    p.add_argument("--out", default="reports/ablation")
    args = p.parse_args()

    settings = load_settings()
    args.checkpoint_dir = args.checkpoint_dir or settings.s3.models_uri("ablation")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    bench = load_benchmark(args.benchmark)
    rows, curves = [], {}
    common = (
        f"--snapshot {args.snapshot} --model {args.model} --steps {args.steps} --batch-size {args.batch_size} "
        f"--image-size {args.image_size} --context-length {args.context_length} --lr {args.lr} "
        f"--tower-lr-scale {args.tower_lr_scale} --seed {args.seed} --checkpoint-dir {args.checkpoint_dir}"
    )

    res = evaluate_embeddings(bench, embed_benchmark(bench, imagenet_effnet_lite0_embedder(args.image_size or 224)))
    rows.append(
        _row(
            "frozen ImageNet EfficientNet-Lite0 (no training)",
            res,
            0.0,
            f"mofi eval --benchmark {args.benchmark} --baseline imagenet-effnet-lite0",
        )
    )
    for recipe in args.recipes.split(","):
        cfg = TrainConfig.from_options(
            dict(
                snapshot=args.snapshot,
                run_name=f"ablation-{recipe}-s{args.seed}",
                model=args.model,
                recipe=recipe,
                steps=args.steps,
                batch_size=args.batch_size,
                lr=args.lr,
                tower_lr_scale=args.tower_lr_scale,
                image_size=args.image_size,
                context_length=args.context_length,
                seed=args.seed,
                checkpoint_dir=args.checkpoint_dir,
                checkpoint_every=args.steps,
                max_pixels=settings.data.max_pixels,
            )
        )
        start = time.perf_counter()
        result = train(cfg, settings.s3)
        seconds = time.perf_counter() - start
        curves[recipe] = result.metrics
        model = EmbeddingModel.load(result.checkpoint, settings.s3)
        res = evaluate_embeddings(bench, embed_benchmark(bench, model.embed_images), model.embed_texts)
        rows.append(
            _row(
                recipe,
                res,
                seconds,
                f"mofi train {common} --recipe {recipe} --run-name {cfg.run_name} && "
                f"mofi eval --benchmark {args.benchmark} --checkpoint {result.checkpoint}",
            )
        )
        print(json.dumps(rows[-1]), flush=True)

    plot_training_curves(curves, out / "curves.png")
    summary = {
        "snapshot": args.snapshot,
        "benchmark": args.benchmark,
        "num_images": len(bench.images),
        "budget": {
            "steps": args.steps,
            "batch_size": args.batch_size,
            "image_size": args.image_size,
            "context_length": args.context_length,
            "lr": args.lr,
            "tower_lr_scale": args.tower_lr_scale,
            "seed": args.seed,
            "model": args.model,
        },
        "rows": rows,
        "note": "(train s: wall-clock seconds of training; the rows ran one after another.)",
    }
    (out / "results.json").write_text(json.dumps(summary, indent=2) + "\n")
    table = markdown_table(rows)
    (out / "results.md").write_text(table)
    print(table, end="")


if __name__ == "__main__":
    main()
