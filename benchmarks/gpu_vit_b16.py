"""MOFI ViT-B/16 training throughput and model FLOPs utilisation (MFU) on one CUDA GPU.

One multi-task training step = image tower + text tower forward, CosFace over ``--classes``
entity classes + CLIP loss, backward, fused AdamW, under bf16 autocast. FLOPs per step are counted
by ``torch.utils.flop_counter.FlopCounterMode`` on a real step (matmuls and convolutions, forward
and backward), so MFU = counted FLOPs x steps/s / the GPU's dense bf16 peak.

    python benchmarks/gpu_vit_b16.py                       # ViT-B/16, batch 256, on cuda
    python benchmarks/gpu_vit_b16.py --compile             # with torch.compile
    python benchmarks/gpu_vit_b16.py --device cpu --model mofi-tiny-vit --batch-size 8 --steps 3  # code path check
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

os.environ.setdefault("HF_HUB_OFFLINE", "1")

#: Dense bf16 tensor-core peak, FLOP/s, by substring of the device name (vendor datasheets).
PEAK_BF16 = {
    "H200": 989.4e12,
    "H100": 989.4e12,
    "A100": 312e12,
    "L40S": 362e12,
    "L4": 121e12,
    "A10G": 70e12,
    "A10": 125e12,
}


def peak_flops(device: torch.device, override_tflops: float) -> float | None:
    if override_tflops:
        return override_tflops * 1e12
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_BF16.items() if k in name), None)


def main() -> None:
    from mofi_platform.training.losses import LossConfig, MofiLoss
    from mofi_platform.training.models import create_model_and_transforms, get_tokenizer
    from mofi_platform.training.trainer import MofiTrainModule

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="mofi-vit-b16")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--classes", type=int, default=100_000)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--device", default="cuda")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--peak-tflops", type=float, default=0.0, help="override the device's dense bf16 peak")
    args = p.parse_args()

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device here; run on a GPU machine (or pass --device cpu to check the code path)")
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    model, _, _ = create_model_and_transforms(args.model, num_classes=args.classes)
    model.to(device)
    module = MofiTrainModule(model)
    step_module = torch.compile(module) if args.compile else module
    opt = torch.optim.AdamW([q for q in model.parameters() if q.requires_grad], lr=1e-4, fused=device.type == "cuda")
    loss_fn = MofiLoss(LossConfig("multitask"))
    size = model.visual.image_size[0]
    images = torch.randn(args.batch_size, 3, size, size, device=device)
    texts = get_tokenizer(args.model)([f"entity {i}: a description of entity {i}" for i in range(args.batch_size)]).to(
        device
    )
    targets = torch.zeros(args.batch_size, args.classes, dtype=torch.bool, device=device)
    targets[torch.arange(args.batch_size), torch.randint(0, args.classes, (args.batch_size,))] = True
    dtype = torch.bfloat16

    def step(mod: torch.nn.Module) -> None:
        with torch.autocast(device.type, dtype=dtype):
            o = mod(images, texts)
            loss = loss_fn(o["image_features"], o["text_features"], o["logit_scale"], o["class_cos"], targets)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    counter = FlopCounterMode(display=False)
    with counter:
        step(module)  # eager: the counter sees every op
    flops_per_step = counter.get_total_flops()
    for _ in range(args.warmup):
        step(step_module)
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(args.steps):
        step(step_module)
    if device.type == "cuda":
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    steps_per_s = args.steps / elapsed
    peak = peak_flops(device, args.peak_tflops)
    achieved = flops_per_step * steps_per_s
    print(
        json.dumps(
            {
                "model": args.model,
                "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
                "batch_size": args.batch_size,
                "classes": args.classes,
                "compile": args.compile,
                "images_per_s": round(args.batch_size * steps_per_s, 1),
                "step_ms": round(1000 / steps_per_s, 1),
                "gflops_per_image_train": round(flops_per_step / args.batch_size / 1e9, 2),
                "achieved_tflops": round(achieved / 1e12, 2),
                "peak_tflops_bf16": peak / 1e12 if peak else None,
                "mfu": round(achieved / peak, 4) if peak else None,
                "max_memory_gib": round(torch.cuda.max_memory_allocated(device) / 2**30, 1)
                if device.type == "cuda"
                else None,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
