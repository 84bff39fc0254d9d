"""Training throughput (images/s) of a MOFI model at 1 and 2 DDP processes on this machine.

Measures the training step itself (forward, multi-task loss with the cross-rank gather, backward,
DDP gradient all-reduce over gloo, AdamW) on in-memory batches, so the number is the compute
ceiling the data stream has to keep up with. Each process gets ``--threads`` intra-op threads.

    .venv/bin/python benchmarks/train_throughput.py --model mofi-tiny-vit --batch-size 32 --image-size 64
    .venv/bin/python benchmarks/train_throughput.py --model mofi-effnet-lite0-minilm --batch-size 16 --image-size 128
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

os.environ.setdefault("HF_HUB_OFFLINE", "1")

NUM_CLASSES = 1000


def _rank(rank: int, world: int, args: argparse.Namespace, init_file: str, out: str) -> None:
    from torch.nn.parallel import DistributedDataParallel

    from mofi_platform.training.losses import LossConfig, MofiLoss
    from mofi_platform.training.models import create_model_and_transforms, get_tokenizer
    from mofi_platform.training.trainer import MofiTrainModule

    torch.set_num_threads(args.threads)
    if world > 1:
        dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    torch.manual_seed(rank)
    model, _, _ = create_model_and_transforms(args.model, num_classes=NUM_CLASSES, image_size=args.image_size or None)
    size = model.visual.image_size[0] if hasattr(model.visual, "image_size") else args.image_size
    module = MofiTrainModule(model)
    if world > 1:
        module = DistributedDataParallel(module)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    loss_fn = MofiLoss(LossConfig("multitask"), rank=rank, world_size=world)
    tok = get_tokenizer(args.model)
    images = torch.randn(args.batch_size, 3, size, size)
    texts = tok([f"entity {i}: a description of entity number {i}" for i in range(args.batch_size)])
    targets = torch.zeros(args.batch_size, NUM_CLASSES, dtype=torch.bool)
    targets[torch.arange(args.batch_size), torch.randint(0, NUM_CLASSES, (args.batch_size,))] = True

    def step() -> None:
        o = module(images, texts)
        loss = loss_fn(o["image_features"], o["text_features"], o["logit_scale"], o["class_cos"], targets)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(args.warmup):
        step()
    if world > 1:
        dist.barrier()
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    if world > 1:
        dist.barrier()
    elapsed = time.perf_counter() - start
    if rank == 0:
        with open(out, "w") as fh:
            json.dump({"seconds": elapsed, "image_size": size}, fh)
    if world > 1:
        dist.destroy_process_group()


def measure(args: argparse.Namespace, world: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "result.json")
        mp.spawn(_rank, args=(world, args, os.path.join(tmp, "init"), out), nprocs=world, join=True)
        with open(out) as fh:
            res = json.load(fh)
    images = world * args.batch_size * args.steps
    return {
        "processes": world,
        "global_batch": world * args.batch_size,
        "image_size": res["image_size"],
        "seconds": round(res["seconds"], 2),
        "images_per_s": round(images / res["seconds"], 1),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="mofi-tiny-vit")
    p.add_argument("--batch-size", type=int, default=32, help="per process")
    p.add_argument("--image-size", type=int, default=0, help="0: the config's size")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=1, help="intra-op threads per process")
    p.add_argument("--processes", default="1,2")
    args = p.parse_args()
    rows = [measure(args, int(w)) for w in args.processes.split(",")]
    print(
        json.dumps(
            {"model": args.model, "threads_per_process": args.threads, "cpus": os.cpu_count(), "results": rows},
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
