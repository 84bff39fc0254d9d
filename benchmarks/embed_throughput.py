"""Embedder images/s over gRPC with concurrent clients versus in-process batched calls; latency at low load.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/embed_throughput.py [--model mofi-tiny-vit] [--checkpoint URI]
        [--images 256] [--clients 16] [--max-batch 32] [--threads 2]

Without ``--checkpoint`` the named model is built with random weights (speed does not depend on the
weights). Images are 256x256 JPEGs of noise, decoded in both paths. In-process: decode + embed
``--max-batch`` images per model call, back to back. Both paths run ``--repeats`` alternating rounds
and the best round of each is reported (the machine may be shared). gRPC: ``--clients`` threads send
single-image ``EmbedImages`` calls and the dynamic batcher merges them. Low load: one client, one
image per call, sequential: p50/p99 latency. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import tempfile
import threading
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import grpc  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from mofi.settings import Settings  # noqa: E402
from mofi.v1 import embedder_pb2 as pb, embedder_pb2_grpc  # noqa: E402
from mofi_platform.services.common.server import grpc_options  # noqa: E402
from mofi_platform.services.embedder.app import build_server  # noqa: E402
from mofi_platform.services.embedder.models import ModelHolder  # noqa: E402
from mofi_platform.services.embedder.resources import load_holder  # noqa: E402
from mofi_platform.services.embedder.vectors import VectorStore  # noqa: E402
from mofi_platform.training import create_model_and_transforms, get_tokenizer  # noqa: E402
from mofi_platform.training.inference import EmbeddingModel  # noqa: E402

from _inputs import random_jpegs  # noqa: E402  (benchmarks/, the script's own folder)


def _holder(settings: Settings, model_name: str, checkpoint: str | None) -> ModelHolder:
    if checkpoint:
        return load_holder(settings, checkpoint)
    model, _, eval_transform = create_model_and_transforms(model_name)
    return ModelHolder(EmbeddingModel.from_model(model, eval_transform, get_tokenizer(model_name), "bench", model_name))


def in_process(holder: ModelHolder, images: list[bytes], batch: int) -> float:
    start = time.perf_counter()
    for i in range(0, len(images), batch):
        holder.embed_images([Image.open(io.BytesIO(b)).convert("RGB") for b in images[i : i + batch]])
    return len(images) / (time.perf_counter() - start)


def over_grpc(stub, images: list[bytes], clients: int) -> float:
    stub.EmbedImages(pb.EmbedImagesRequest(images=images[:1]))  # warm-up
    shares = [images[c::clients] for c in range(clients)]
    errors: list[Exception] = []

    def client(share: list[bytes]) -> None:
        try:
            for b in share:
                stub.EmbedImages(pb.EmbedImagesRequest(images=[b]), timeout=120)
        except grpc.RpcError as e:
            errors.append(e)

    threads = [threading.Thread(target=client, args=(s,)) for s in shares]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    if errors:
        raise RuntimeError(f"{len(errors)} calls failed: {errors[0]}")
    return len(images) / elapsed


def low_load_latency(stub, images: list[bytes], n: int) -> dict[str, float]:
    lat = []
    for b in images[:n]:
        t = time.perf_counter()
        stub.EmbedImages(pb.EmbedImagesRequest(images=[b]), timeout=60)
        lat.append((time.perf_counter() - t) * 1000)
    return {"p50_ms": round(float(np.percentile(lat, 50)), 2), "p99_ms": round(float(np.percentile(lat, 99)), 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="mofi-tiny-vit")
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--images", type=int, default=256)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--max-batch", type=int, default=32)
    ap.add_argument("--max-wait-ms", type=float, default=5.0)
    ap.add_argument("--repeats", type=int, default=3, help="alternating rounds; the best of each is reported")
    ap.add_argument("--latency-calls", type=int, default=50)
    ap.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    settings = Settings()
    settings.embedder.max_batch = args.max_batch
    settings.embedder.max_wait_ms = args.max_wait_ms
    settings.grpc.max_workers = max(args.clients + 4, settings.grpc.max_workers)
    holder = _holder(settings, args.model, args.checkpoint)
    images = random_jpegs(args.images)
    in_process(holder, images[: args.max_batch], args.max_batch)  # warm-up

    vectors = VectorStore(os.path.join(tempfile.mkdtemp(), "embed_bench.db"), "bench")
    running = build_server(settings, holder, vectors, port=0)
    channel = grpc.insecure_channel(f"127.0.0.1:{running.port}", options=grpc_options(settings.grpc.max_message_bytes))
    stub = embedder_pb2_grpc.EmbedderStub(channel)
    try:
        local, remote = [], []
        for _ in range(args.repeats):  # alternate, so background load hits both paths alike
            local.append(in_process(holder, images, args.max_batch))
            remote.append(over_grpc(stub, images, args.clients))
        local, remote = max(local), max(remote)
        latency = low_load_latency(stub, images, args.latency_calls)
    finally:
        channel.close()
        running.stop(1.0)
        vectors.close()
    print(
        json.dumps(
            {
                "model": holder.model.model_name,
                "dim": holder.dim,
                "images": args.images,
                "clients": args.clients,
                "max_batch": args.max_batch,
                "max_wait_ms": args.max_wait_ms,
                "torch_threads": args.threads,
                "repeats": args.repeats,
                "in_process_img_s": round(local, 1),
                "grpc_img_s": round(remote, 1),
                "grpc_vs_in_process": round(remote / local, 3),
                "low_load_single_image": latency,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
