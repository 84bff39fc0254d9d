"""Scorer images/s: the model in-process at several batch sizes, and the gRPC service under concurrency.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/scorer_throughput.py --corpus URI --checkpoint URI [--images 128]

The checkpoint is any scorer checkpoint (``mofi clip bootstrap`` writes one). Inputs are corpus
images (real formats and sizes, seeded shuffle), each scored against three texts: its own alt-text
and those of the next two images (so each text recurs three times and the text cache sees about the
hit rate of real candidates). Images are decoded by the service's guarded decoder in both paths.
gRPC: ``--clients`` threads send single-image ``Score`` calls; the dynamic batcher merges them.

The model is loaded as the service loads it: one torch thread (``--threads``) and the image tower
tuned (``mofi_platform.services.scorer.tuning``; ``--no-tune`` measures it as saved). Other processes on the
machine change the numbers a lot: the load average before and after is part of the result.
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import grpc  # noqa: E402
import torch  # noqa: E402

from mofi.settings import GrpcSettings, load_settings  # noqa: E402
from mofi.v1 import scorer_pb2, scorer_pb2_grpc  # noqa: E402
from mofi_platform.services.common.images import decode_image  # noqa: E402
from mofi_platform.services.scorer.app import build_server, load_model, load_scorer  # noqa: E402
from mofi_platform.services.scorer.scoring import ClipScorer  # noqa: E402

from _inputs import corpus_samples  # noqa: E402  (benchmarks/, the script's own folder)

Item = tuple[bytes, list[str]]


def in_process(scorer: ClipScorer, items: list[Item], batch: int, max_bytes: int, max_pixels: int) -> float:
    """Decode + score, ``batch`` images per model call, starting from an empty text cache."""
    scorer.reload(scorer.model, scorer.text_table)  # empties the text cache, keeps the table
    start = time.perf_counter()
    for i in range(0, len(items), batch):
        scorer.score_many([(decode_image(b, max_bytes, max_pixels), texts) for b, texts in items[i : i + batch]])
    return len(items) / (time.perf_counter() - start)


def over_grpc(port: int, items: list[Item], clients: int) -> float:
    channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.max_send_message_length", 64 << 20)])
    stub = scorer_pb2_grpc.ClipScorerStub(channel)
    per = [items[i::clients] for i in range(clients)]

    def run(mine):
        for b, texts in mine:
            stub.Score(scorer_pb2.ScoreRequest(image=b, texts=texts), timeout=60)

    threads = [threading.Thread(target=run, args=(p,)) for p in per]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    channel.close()
    return len(items) / elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", required=True, help="Corpus shard prefix: a local folder or s3://bucket/prefix/.")
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
    scorer = load_scorer(settings, model)  # as the service builds it
    samples = corpus_samples(args.corpus, n=args.images + 2)
    items = [(s.image_bytes, [t.text for t in samples[i : i + 3]]) for i, s in enumerate(samples[: args.images])]
    cfg = settings.scorer
    scorer.score_many([(decode_image(items[-1][0], cfg.max_image_bytes, settings.data.max_pixels), ["warm-up"])])
    result = {
        "model": model.model_name,
        "version": model.version,
        "images": args.images,
        "threads": args.threads,
        "tuned": not args.no_tune,
        "image_batch": scorer.image_batch,
        "texts_per_image": 3,
        "in_process_images_per_s": {},
    }
    for batch in (1, 8, 32):
        rate = in_process(scorer, items, batch, cfg.max_image_bytes, settings.data.max_pixels)
        result["in_process_images_per_s"][batch] = round(rate, 2)
    settings.grpc = GrpcSettings(max_workers=max(16, args.clients))  # one handler thread per client
    server = build_server(settings, scorer, port=0)
    try:
        result["grpc_images_per_s"] = round(over_grpc(server.port, items, args.clients), 2)
        result["grpc_clients"] = args.clients
        result["max_batch"], result["max_wait_ms"] = settings.scorer.max_batch, settings.scorer.max_wait_ms
    finally:
        server.stop(1)
    result["load_average_1m"] = {"before": round(load_before[0], 2), "after": round(os.getloadavg()[0], 2)}
    result["cpu_count"] = os.cpu_count()
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
