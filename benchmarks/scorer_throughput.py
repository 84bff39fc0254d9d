"""Scorer images/s: the model in-process at several batch sizes, and the gRPC service under concurrency.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/scorer_throughput.py --checkpoint URI [--images 128]

The checkpoint is any scorer checkpoint (``mofi clip bootstrap`` writes one). Each 256x256 JPEG is
scored against 3 candidate texts (their embeddings are cached after the first image, as in the
stage). gRPC: ``--clients`` threads send single-image ``Score`` calls; the dynamic batcher merges them.

The model is loaded as the service loads it: one torch thread (``--threads``) and the image tower
tuned (``mofi_platform.services.scorer.tuning``; ``--no-tune`` measures it as saved). Other processes on the
machine change the numbers a lot: the load average before and after is part of the result.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import threading
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import grpc  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from mofi.settings import GrpcSettings, load_settings  # noqa: E402
from mofi.v1 import scorer_pb2, scorer_pb2_grpc  # noqa: E402
from mofi_platform.services.scorer.app import build_server, load_model  # noqa: E402
from mofi_platform.services.scorer.scoring import ClipScorer  # noqa: E402

from _inputs import random_jpegs  # noqa: E402  (benchmarks/, the script's own folder)

TEXTS = [
    "tiger: large feline of forests in most of Asia",
    "Paris: capital and largest city of France",
    "sailboat: a small sailing vessel",
]


def in_process(scorer: ClipScorer, images: list[bytes], batch: int) -> float:
    """Decode + score, ``batch`` images per model call."""
    scorer.score_many([(Image.open(io.BytesIO(images[0])).convert("RGB"), TEXTS)])  # warm-up, text cache
    start = time.perf_counter()
    for i in range(0, len(images), batch):
        chunk = [(Image.open(io.BytesIO(b)).convert("RGB"), TEXTS) for b in images[i : i + batch]]
        scorer.score_many(chunk)
    return len(images) / (time.perf_counter() - start)


def over_grpc(port: int, images: list[bytes], clients: int) -> float:
    channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.max_send_message_length", 64 << 20)])
    stub = scorer_pb2_grpc.ClipScorerStub(channel)
    stub.Score(scorer_pb2.ScoreRequest(image=images[0], texts=TEXTS), timeout=60)
    per = [images[i::clients] for i in range(clients)]

    def run(mine):
        for b in mine:
            stub.Score(scorer_pb2.ScoreRequest(image=b, texts=TEXTS), timeout=60)

    threads = [threading.Thread(target=run, args=(p,)) for p in per]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    channel.close()
    return len(images) / elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", required=True, help="Scorer checkpoint: local path or s3:// URI.")
    ap.add_argument("--images", type=int, default=128)
    ap.add_argument("--threads", type=int, default=1, help="Torch threads (the service runs one).")
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument(
        "--no-tune", action="store_true", help="Score with the image tower as saved (no BatchNorm folding)."
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    settings = load_settings()
    load_before = os.getloadavg()
    model = load_model(settings, args.checkpoint, tune=not args.no_tune)
    scorer = ClipScorer(model)
    images = random_jpegs(args.images)
    result = {
        "model": model.model_name,
        "version": model.version,
        "images": args.images,
        "threads": args.threads,
        "tuned": not args.no_tune,
        "image_batch": scorer.image_batch,
        "texts_per_image": len(TEXTS),
        "in_process_images_per_s": {},
    }
    for batch in (1, 8, 32):
        result["in_process_images_per_s"][batch] = round(in_process(scorer, images, batch), 2)
    settings.grpc = GrpcSettings(max_workers=max(16, args.clients))  # one handler thread per client
    server = build_server(settings, scorer, port=0)
    try:
        result["grpc_images_per_s"] = round(over_grpc(server.port, images, args.clients), 2)
        result["grpc_clients"] = args.clients
        result["max_batch"], result["max_wait_ms"] = settings.scorer.max_batch, settings.scorer.max_wait_ms
    finally:
        server.stop(1)
    result["load_average_1m"] = {"before": round(load_before[0], 2), "after": round(os.getloadavg()[0], 2)}
    result["cpu_count"] = os.cpu_count()
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
