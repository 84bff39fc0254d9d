"""Search latency and QPS at 100k vectors in milvus-lite, per index type, through ``VectorStore``.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/search_latency.py [--n 100000] [--dim 256]
        [--types FLAT,IVF_FLAT,IVF_SQ8,HNSW,AUTOINDEX,IVF_PQ] [--queries 200] [--threads 4]

Vectors are unit-normalised Gaussian mixtures (256 clusters, so approximate indexes have structure to
exploit); queries are perturbed copies of held-out points. Per index type: build time (insert +
load + alias switch), single-query p50/p99 latency (sequential, each call resolves the alias as the
service does), QPS with ``--threads`` concurrent searchers, and recall@10 against exact numpy
search, which shows whether an index type really works or silently searches exhaustively.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
from tqdm import tqdm  # noqa: E402

from mofi_platform.services.embedder.vectors import IndexRow, VectorStore  # noqa: E402

INDEX_PARAMS = {
    "FLAT": ({}, {}),
    "IVF_FLAT": ({"nlist": 1024}, {"nprobe": 16}),
    "IVF_SQ8": ({"nlist": 1024}, {"nprobe": 16}),
    "IVF_PQ": ({"nlist": 1024, "m": 16, "nbits": 8}, {"nprobe": 16}),
    "HNSW": ({"M": 16, "efConstruction": 200}, {"ef": 64}),
    "AUTOINDEX": ({}, {}),
}


def _data(n: int, dim: int, queries: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(256, dim)).astype(np.float32)
    base = centres[rng.integers(0, 256, n)] + 0.6 * rng.normal(size=(n, dim)).astype(np.float32)
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    q = base[rng.choice(n, queries, replace=False)] + 0.05 * rng.normal(size=(queries, dim)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    return base, q


def _build(vectors: VectorStore, base: np.ndarray, chunk: int) -> float:
    start = time.perf_counter()
    collection = vectors.new_collection(base.shape[1])
    for i in tqdm(range(0, len(base), chunk), desc=f"insert {vectors.index_type}", disable=None):
        vectors.insert(
            collection,
            [
                IndexRow(f"p{j:07d}", base[j], [f"e:{j % 100}"], [f"entity {j % 100}"], "bench")
                for j in range(i, min(i + chunk, len(base)))
            ],
        )
    vectors.publish(collection)
    return time.perf_counter() - start


def _qps(vectors: VectorStore, queries: np.ndarray, threads: int, k: int) -> float:
    shares = [queries[t::threads] for t in range(threads)]
    workers = [threading.Thread(target=lambda s=s: [vectors.search(q, k) for q in s]) for s in shares]
    start = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return len(queries) / (time.perf_counter() - start)


def bench(index_type: str, base: np.ndarray, queries: np.ndarray, truth: np.ndarray, args, root: str) -> dict:
    index_params, search_params = INDEX_PARAMS[index_type]
    vectors = VectorStore(
        os.path.join(root, f"{index_type.lower()}.db"),
        f"bench_{index_type.lower()}",
        index_type=index_type,
        index_params=index_params,
        search_params=search_params,
    )
    try:
        build_s = _build(vectors, base, args.chunk)
        vectors.search(queries[0], args.k)  # warm-up
        lat, recall = [], []
        for q, want in zip(queries, truth):
            t = time.perf_counter()
            _, hits = vectors.search(q, args.k)
            lat.append((time.perf_counter() - t) * 1000)
            recall.append(len({h.pair_id for h in hits} & {f"p{j:07d}" for j in want}) / args.k)
        qps = _qps(vectors, queries, args.threads, args.k)
    finally:
        vectors.close()
    return {
        "index": index_type,
        "build_s": round(build_s, 1),
        "p50_ms": round(float(np.percentile(lat, 50)), 1),
        "p99_ms": round(float(np.percentile(lat, 99)), 1),
        "qps_sequential": round(1000 / float(np.mean(lat)), 1),
        f"qps_{args.threads}_threads": round(qps, 1),
        f"recall@{args.k}": round(float(np.mean(recall)), 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--types", default="FLAT,IVF_FLAT,IVF_SQ8,HNSW,AUTOINDEX,IVF_PQ")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--chunk", type=int, default=5000)
    args = ap.parse_args()
    base, queries = _data(args.n, args.dim, args.queries)
    truth = np.argsort(-(queries @ base.T), axis=1)[:, : args.k]
    root = tempfile.mkdtemp(prefix="search_bench_")
    results = []
    for index_type in args.types.split(","):
        results.append(bench(index_type, base, queries, truth, args, root))
        print(json.dumps(results[-1]), flush=True)
    print(json.dumps({"n": args.n, "dim": args.dim, "k": args.k, "results": results}, indent=2))


if __name__ == "__main__":
    main()
