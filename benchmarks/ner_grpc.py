"""NER on real traffic with cold caches: CPU-seconds per alt-text, in-process versus gRPC ``ExtractBatch``.

    make bench B=ner_grpc ARGS="--corpus .mofi/data/shards/"
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/ner_grpc.py --corpus URI [--kb PATH] [--runs 3] [--texts 512]

What is measured: the corpus's own alt-texts (shuffled with a fixed seed) against the full knowledge
base, as the NER stage meets them. Every (run, arm) is a fresh process that has never seen its texts:
each gets its own slice of the shuffled corpus, loads the extractor (and the entity-vector table beside
the KB when there is one; ``--no-table`` leaves it out, as a KB without `mofi ner vectors` runs), is
warmed on one unrelated sentence (spaCy and torch initialised, no entity text cached), and then
extracts its slice in batches of ``--batch``: in-process (``Extractor.extract``) or as ``ExtractBatch``
calls to a gRPC server in the same process over loopback (the server's and the client's CPU both
count). The arms alternate which goes first from run to run; torch and the tokenizer run one thread
in both, as the NER processes do.

Reported per arm: CPU-seconds per alt-text of the process (``time.process_time``: what an alt-text
costs whoever else shares the cores), alt-texts/s wall, per-batch p50/p99, each as mean and range
over the runs; the gRPC/in-process ratio of the wall rates, run by run; the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # every CPU cycle on the timed thread
ROOT = Path(__file__).resolve().parent.parent
ARMS = ("in_process", "grpc")


def run_arm(arm: str, texts: list[str], kb: str, batch: int, table: bool) -> dict:
    """One cold process: load, warm on an unrelated sentence, time the slice."""
    import numpy as np
    import torch

    from mofi.kb import KnowledgeBase
    from mofi.settings import NerSettings, Settings

    torch.set_num_threads(1)
    from mofi_platform.services.ner.extractor import Extractor

    extractor = Extractor(NerSettings(kb_path=kb), KnowledgeBase.load(kb))
    if table:
        extractor.load_vectors(kb)
    extractor.extract(["warming up"])  # no mention, so no entity text is cached
    call = extractor.extract
    closing = []
    if arm == "grpc":
        import grpc

        from mofi.v1 import ner_pb2, ner_pb2_grpc
        from mofi_platform.services.ner.app import build_server

        settings = Settings()
        server = build_server(settings, extractor, port=0)
        channel = grpc.insecure_channel(
            f"127.0.0.1:{server.port}", options=[("grpc.max_receive_message_length", settings.grpc.max_message_bytes)]
        )
        stub = ner_pb2_grpc.EntityExtractorStub(channel)

        def call(chunk):
            req = ner_pb2.ExtractBatchRequest(
                items=[ner_pb2.ExtractRequest(text=t, request_id=str(i)) for i, t in enumerate(chunk)]
            )
            reply = stub.ExtractBatch(req, timeout=300, wait_for_ready=True)
            assert len(reply.items) == len(chunk)

        call(["warming up"])
        closing = [channel.close, lambda: server.stop(1)]
    latencies = []
    c0, t0 = time.process_time(), time.perf_counter()
    for start in range(0, len(texts), batch):
        b0 = time.perf_counter()
        call(texts[start : start + batch])
        latencies.append(time.perf_counter() - b0)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    for close in closing:
        close()
    lat = np.array(latencies)
    return {
        "arm": arm,
        "texts": len(texts),
        "cpu_s_per_text": cpu / len(texts),
        "texts_per_s": len(texts) / wall,
        "batch_p50_ms": float(np.percentile(lat, 50)) * 1e3,
        "batch_p99_ms": float(np.percentile(lat, 99)) * 1e3,
        "entity_vectors_in_table": len(extractor.encoder.table) if extractor.encoder.table is not None else 0,
        "spacy_model": extractor.spacy_pipeline,
    }


def spread(values: list[float], digits: int) -> dict:
    return {"mean": round(sum(values) / len(values), digits), "min": round(min(values), digits),
            "max": round(max(values), digits)}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", required=True, help="Corpus shard prefix: a local folder or s3://bucket/prefix/.")
    ap.add_argument("--kb", default="", help="Knowledge base JSONL (default: ner.kb_path, else the built one).")
    ap.add_argument("--runs", type=int, default=3, help="Fresh processes per arm.")
    ap.add_argument("--texts", type=int, default=512, help="Alt-texts per process (each process its own).")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-table", action="store_true", help="Encode entity texts on demand (no vector table).")
    ap.add_argument("--_arm", help=argparse.SUPPRESS)
    ap.add_argument("--_slice", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if not args.kb:
        from mofi.settings import load_settings
        from mofi_platform.services.common.entity_vectors import kb_path

        args.kb = kb_path(load_settings())
    from _inputs import corpus_samples  # benchmarks/, the script's own folder

    texts = [s.text for s in corpus_samples(args.corpus, args.seed)]
    if args._arm:  # a child process: its own slice
        mine = texts[args._slice * args.texts : (args._slice + 1) * args.texts]
        print(json.dumps(run_arm(args._arm, mine, args.kb, args.batch, not args.no_table)))
        return
    if len(texts) < 2 * args.runs * args.texts:
        raise SystemExit(f"{len(texts)} alt-texts: too few for {2 * args.runs} slices of {args.texts}")
    load_before = os.getloadavg()[0]
    results: dict[str, list[dict]] = {arm: [] for arm in ARMS}
    slice_no = 0
    for run in range(args.runs):
        for arm in ARMS if run % 2 == 0 else ARMS[::-1]:
            cmd = [sys.executable, __file__, "--corpus", args.corpus, "--kb", args.kb, "--texts", str(args.texts),
                   "--batch", str(args.batch), "--seed", str(args.seed), "--_arm", arm,
                   "--_slice", str(slice_no)]  # fmt: skip
            if args.no_table:
                cmd.append("--no-table")
            slice_no += 1
            out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT).stdout
            row = json.loads(out.strip().splitlines()[-1])
            results[arm].append(row)
            print(json.dumps({"run": run, **{k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}}))
    summary = {
        "corpus": args.corpus,
        "kb": args.kb,
        "table": not args.no_table,
        "runs": args.runs,
        "texts_per_process": args.texts,
        "batch": args.batch,
        "spacy_model": results["in_process"][0]["spacy_model"],
        "entity_vectors_in_table": results["in_process"][0]["entity_vectors_in_table"],
        **{
            arm: {
                "cpu_s_per_text": spread([r["cpu_s_per_text"] for r in rows], 4),
                "texts_per_s": spread([r["texts_per_s"] for r in rows], 1),
                "batch_p50_ms": spread([r["batch_p50_ms"] for r in rows], 0),
                "batch_p99_ms": spread([r["batch_p99_ms"] for r in rows], 0),
            }
            for arm, rows in results.items()
        },
        "grpc_over_in_process": spread(
            [g["texts_per_s"] / i["texts_per_s"] for g, i in zip(results["grpc"], results["in_process"])], 3
        ),
        "load_average_1m": {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2)},
    }
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
