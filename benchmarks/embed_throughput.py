"""Embedder with the served model: gRPC at 1 and 16 concurrent clients versus the same model batched in-process.

    make bench B=embed_throughput ARGS="--corpus .mofi/data/shards/"
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/embed_throughput.py --corpus URI
        [--checkpoint URI | --model NAME --image-size N] [--images 256] [--texts 512] [--clients 1,16]
        [--runs 3] [--threads 2]

Inputs are the corpus's own images (their real formats and sizes) and alt-texts, in a seeded shuffle.
The model is the one the demo serves (``_served.py``: its checkpoint, or its architecture and input
size with the pretrained towers). In-process: the service's guarded decoder and the model,
``--max-batch`` items per call, back to back: the ceiling. gRPC: a server in this process with the
service's dynamic batcher; each of ``--clients`` threads sends one item per call, the hardest case
for the batcher, and every call's latency is recorded (p50/p99). Images and texts are timed
separately. Each of ``--runs`` rounds runs every arm once, the order rotating between rounds so that
background load falls on all arms alike; results are the mean, min and max over rounds. All arms use
the same torch threads. Prints one JSON line per arm and round, then a summary object.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import grpc  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from mofi.settings import Settings  # noqa: E402
from mofi.v1 import embedder_pb2 as pb, embedder_pb2_grpc  # noqa: E402
from mofi_platform.services.common.images import decode_image  # noqa: E402
from mofi_platform.services.common.server import grpc_options  # noqa: E402
from mofi_platform.services.embedder.app import build_server  # noqa: E402
from mofi_platform.services.embedder.models import TEXT  # noqa: E402
from mofi_platform.services.embedder.vectors import VectorStore  # noqa: E402

from _inputs import corpus_samples  # noqa: E402  (benchmarks/, the script's own folder)
from _served import add_model_options, served_holder  # noqa: E402


def in_process(holder, settings: Settings, kind: str, items: list, batch: int) -> dict:
    cfg = settings.embedder
    size = holder.model.image_size  # decoded for the model's input size, as the service decodes
    start = time.perf_counter()
    for i in range(0, len(items), batch):
        chunk = items[i : i + batch]
        if kind == "images":
            holder.embed_images([decode_image(b, cfg.max_image_bytes, cfg.max_pixels, size) for b in chunk])
        else:
            holder.embed_batch([(TEXT, t) for t in chunk])
    return {"per_s": len(items) / (time.perf_counter() - start)}


def over_grpc(stub, kind: str, items: list, clients: int) -> dict:
    shares = [items[c::clients] for c in range(clients)]
    latencies: list[list[float]] = [[] for _ in shares]
    errors: list[Exception] = []

    def client(share: list, lat: list[float]) -> None:
        try:
            for item in share:
                t = time.perf_counter()
                if kind == "images":
                    stub.EmbedImages(pb.EmbedImagesRequest(images=[item]), timeout=120)
                else:
                    stub.EmbedTexts(pb.EmbedTextsRequest(texts=[item]), timeout=120)
                lat.append((time.perf_counter() - t) * 1000)
        except grpc.RpcError as e:
            errors.append(e)

    threads = [threading.Thread(target=client, args=(s, lat)) for s, lat in zip(shares, latencies)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    if errors:
        raise RuntimeError(f"{len(errors)} calls failed: {errors[0]}")
    flat = [x for lat in latencies for x in lat]
    return {
        "per_s": len(items) / elapsed,
        "p50_ms": float(np.percentile(flat, 50)),
        "p99_ms": float(np.percentile(flat, 99)),
    }


def spread(values: list[float], digits: int = 1) -> dict:
    return {
        "mean": round(float(np.mean(values)), digits),
        "min": round(min(values), digits),
        "max": round(max(values), digits),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", required=True, help="Corpus shard prefix: a local folder or s3://bucket/prefix/.")
    add_model_options(ap)
    ap.add_argument("--images", type=int, default=256)
    ap.add_argument("--texts", type=int, default=512)
    ap.add_argument("--clients", default="1,16", help="Concurrent gRPC clients, one arm each.")
    ap.add_argument("--max-batch", type=int, default=None, help="Default: embedder.max_batch.")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2, help="torch intra-op threads (all arms)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    settings = Settings()
    if args.max_batch:
        settings.embedder.max_batch = args.max_batch
    clients = [int(c) for c in args.clients.split(",")]
    settings.grpc.max_workers = max(max(clients) + 4, settings.grpc.max_workers)
    samples = corpus_samples(args.corpus, args.seed, max(args.images, args.texts))
    inputs = {
        "images": [s.image_bytes for s in samples[: args.images]],
        "texts": [s.text for s in samples[: args.texts]],
    }
    holder = served_holder(args, settings)
    batch = settings.embedder.max_batch
    for kind, items in inputs.items():  # warm-up: first-call allocations are not part of any arm
        in_process(holder, settings, kind, items[:batch], batch)

    vectors = VectorStore(os.path.join(tempfile.mkdtemp(), "embed_bench.db"), "bench")
    running = build_server(settings, holder, vectors, port=0)
    channel = grpc.insecure_channel(f"127.0.0.1:{running.port}", options=grpc_options(settings.grpc.max_message_bytes))
    stub = embedder_pb2_grpc.EmbedderStub(channel)
    arms = ["in_process"] + [f"grpc_{c}" for c in clients]
    results: dict[tuple[str, str], list[dict]] = {}
    try:
        for kind, items in inputs.items():
            for run in range(args.runs):
                for arm in arms[run % len(arms) :] + arms[: run % len(arms)]:  # rotate the order
                    if arm == "in_process":
                        r = in_process(holder, settings, kind, items, batch)
                    else:
                        r = over_grpc(stub, kind, items, int(arm.split("_")[1]))
                    results.setdefault((kind, arm), []).append(r)
                    print(json.dumps({"kind": kind, "arm": arm, "run": run, **{k: round(v, 2) for k, v in r.items()}}))
    finally:
        channel.close()
        running.stop(1.0)
        vectors.close()

    summary: dict = {
        "model": holder.model.model_name,
        "version": holder.version,
        "dim": holder.dim,
        "corpus": args.corpus,
        "counts": {"images": args.images, "texts": args.texts},
        "max_batch": batch,
        "max_wait_ms": settings.embedder.max_wait_ms,
        "torch_threads": args.threads,
        "runs": args.runs,
        "load_avg_1m_end": round(os.getloadavg()[0], 2),
    }
    for kind in inputs:
        local = [r["per_s"] for r in results[(kind, "in_process")]]
        row: dict = {"in_process_per_s": spread(local)}
        for c in clients:
            runs = results[(kind, f"grpc_{c}")]
            row[f"grpc_{c}_clients"] = {
                "per_s": spread([r["per_s"] for r in runs]),
                "vs_in_process": spread([r["per_s"] / lo for r, lo in zip(runs, local)], 3),
                "p50_ms": spread([r["p50_ms"] for r in runs]),
                "p99_ms": spread([r["p99_ms"] for r in runs]),
            }
        summary[kind] = row
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
