"""NER throughput: ExtractBatch over gRPC versus the same extractor called in-process.

Texts are real alt-texts (the judged sample of the corpus sources, tests/ner/evalset.jsonl) with the
matching knowledge base; batches of ``--batch`` texts. The two modes alternate batch by batch, so a
busy machine slows both alike. Reported: docs/s (wall), per-batch p50/p99 latency, and in-process
docs per CPU-second of the process (torch and the tokenizer are held to one thread, so this is
the per-core rate, largely independent of other load on the machine). The MiniLM
entity-text cache is warmed first: a long-running service has seen the knowledge base's frequent
entities.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/ner_grpc.py [--batch 64] [--rounds 12]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # every CPU cycle on the timed thread
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import grpc  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from mofi.kb import KnowledgeBase  # noqa: E402
from mofi.settings import NerSettings, Settings  # noqa: E402
from mofi.v1 import ner_pb2, ner_pb2_grpc  # noqa: E402
from mofi_platform.services.ner.app import build_server  # noqa: E402
from mofi_platform.services.ner.evaluation import load_evalset  # noqa: E402
from mofi_platform.services.ner.extractor import Extractor  # noqa: E402


def summary(latencies: list[float], docs: int) -> dict:
    lat = np.array(latencies)
    return {
        "docs_per_s": round(docs / lat.sum(), 1),
        "batch_p50_ms": round(float(np.percentile(lat, 50)) * 1e3, 1),
        "batch_p99_ms": round(float(np.percentile(lat, 99)) * 1e3, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=12)
    args = ap.parse_args()
    torch.set_num_threads(1)
    texts = [r.text for r in load_evalset(ROOT / "tests/ner/evalset.jsonl")]
    kb_path = ROOT / "tests/ner/kb.jsonl"
    extractor = Extractor(NerSettings(kb_path=str(kb_path)), KnowledgeBase.load(kb_path))
    extractor.extract(texts)  # warm: entity texts cached, spaCy/torch initialised
    settings = Settings()
    server = build_server(settings, extractor, port=0)
    channel = grpc.insecure_channel(
        f"127.0.0.1:{server.port}", options=[("grpc.max_receive_message_length", settings.grpc.max_message_bytes)]
    )
    stub = ner_pb2_grpc.EntityExtractorStub(channel)
    rng = random.Random(0)
    local, remote, cpu = [], [], 0.0
    for _ in range(args.rounds):
        batch = rng.sample(texts, args.batch)
        c0, t0 = time.process_time(), time.perf_counter()
        extractor.extract(batch)
        local.append(time.perf_counter() - t0)
        cpu += time.process_time() - c0
        request = ner_pb2.ExtractBatchRequest(
            items=[ner_pb2.ExtractRequest(text=t, request_id=str(i)) for i, t in enumerate(batch)]
        )
        t0 = time.perf_counter()
        reply = stub.ExtractBatch(request, timeout=120)
        remote.append(time.perf_counter() - t0)
        assert len(reply.items) == len(batch)
    channel.close()
    server.stop(1)
    docs = args.batch * args.rounds
    result = {
        "texts": len(texts),
        "spacy_model": extractor.spacy_pipeline,
        "batch": args.batch,
        "rounds": args.rounds,
        "in_process": summary(local, docs),
        "grpc": summary(remote, docs),
        "in_process_docs_per_cpu_s": round(docs / cpu, 1),
        "load_average_1m": os.getloadavg()[0],
    }
    result["grpc_over_in_process"] = round(result["grpc"]["docs_per_s"] / result["in_process"]["docs_per_s"], 3)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
