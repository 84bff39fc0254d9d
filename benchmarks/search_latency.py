"""Search latency, QPS and recall@10 against exact search in milvus-lite, per index type, through ``VectorStore``.

    make bench B=search_latency ARGS="--corpus .mofi/data/shards/ --benchmark .mofi/data/benchmark"
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/search_latency.py --corpus URI --benchmark DIR
        [--checkpoint URI | --model NAME --image-size N] [--types FLAT,IVF_FLAT,IVF_SQ8,HNSW,AUTOINDEX]
        [--threads 4]
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/search_latency.py --gaussian 100000 [--dim 256]

Real embeddings (the default): the index holds the served model's embeddings of every corpus image
(what the I2E index holds), and the queries are the held-out development benchmark's images, none of
them in the corpus; embeddings are computed once per model and cached under ``--cache``. Scale:
``--gaussian N`` indexes N unit-normalised Gaussian-mixture vectors (256 clusters) instead and
queries perturbed copies of stored points (easier than real queries: a scale test only).
IVF ``nlist`` is 4 x sqrt(N) (at least 16). Per index type: build time (insert + load + alias
switch), single-query p50/p99 latency (sequential, each call resolves the alias as the service
does), QPS with ``--threads`` concurrent searchers, and recall@10 against exact numpy search, which
shows whether an index type really works or silently searches exhaustively.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
from tqdm import tqdm  # noqa: E402

from mofi.images import decode_rgb  # noqa: E402
from mofi.settings import Settings  # noqa: E402
from mofi_platform.services.embedder.vectors import IndexRow, VectorStore  # noqa: E402
from mofi_platform.training.evaluation import embed_benchmark, load_benchmark  # noqa: E402

from _inputs import corpus_samples  # noqa: E402  (benchmarks/, the script's own folder)
from _served import add_model_options, served_holder  # noqa: E402


def index_params(index_type: str, n: int) -> tuple[dict, dict]:
    nlist = max(16, int(4 * math.sqrt(n)))
    return {
        "FLAT": ({}, {}),
        "IVF_FLAT": ({"nlist": nlist}, {"nprobe": 16}),
        "IVF_SQ8": ({"nlist": nlist}, {"nprobe": 16}),
        "IVF_PQ": ({"nlist": nlist, "m": 16, "nbits": 8}, {"nprobe": 16}),
        "HNSW": ({"M": 16, "efConstruction": 200}, {"ef": 64}),
        "AUTOINDEX": ({}, {}),
    }[index_type]


def real_embeddings(args) -> tuple[np.ndarray, np.ndarray, str]:
    """(corpus image embeddings, benchmark image embeddings, model name), cached per model and inputs."""
    settings = Settings()
    inputs = [args.checkpoint, args.model, args.image_size, args.corpus, args.benchmark]
    key = hashlib.sha256(json.dumps(inputs).encode())
    cache = Path(args.cache) / f"search-{key.hexdigest()[:16]}.npz"
    if cache.is_file():
        with np.load(cache) as f:
            return f["base"], f["queries"], str(f["model"])
    holder = served_holder(args, settings)
    embed = holder.model.embed_images
    samples = corpus_samples(args.corpus)
    base = []
    for i in tqdm(range(0, len(samples), 32), desc="embed corpus", unit="batch"):
        chunk = samples[i : i + 32]
        base.append(embed([decode_rgb(s.image_bytes, max_pixels=settings.data.max_pixels) for s in chunk]))
    queries = embed_benchmark(load_benchmark(args.benchmark), embed)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, base=np.concatenate(base), queries=queries, model=holder.model.model_name)
    return np.concatenate(base), queries, holder.model.model_name


def gaussian(n: int, dim: int, queries: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
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
    build_params, search_params = index_params(index_type, len(base))
    vectors = VectorStore(
        os.path.join(root, f"{index_type.lower()}.db"),
        f"bench_{index_type.lower()}",
        index_type=index_type,
        index_params=build_params,
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
        "params": {**build_params, **search_params},
        "build_s": round(build_s, 1),
        "p50_ms": round(float(np.percentile(lat, 50)), 1),
        "p99_ms": round(float(np.percentile(lat, 99)), 1),
        "qps_sequential": round(1000 / float(np.mean(lat)), 1),
        f"qps_{args.threads}_threads": round(qps, 1),
        f"recall@{args.k}": round(float(np.mean(recall)), 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", help="Corpus shard prefix whose images are indexed (real embeddings).")
    ap.add_argument("--benchmark", help="Benchmark folder whose images are the queries (real embeddings).")
    add_model_options(ap)
    ap.add_argument("--cache", default=".mofi/bench-cache", help="Folder for the cached real embeddings.")
    ap.add_argument("--gaussian", type=int, default=0, help="Index this many synthetic vectors instead (scale).")
    ap.add_argument("--dim", type=int, default=256, help="Dimension of the synthetic vectors.")
    ap.add_argument("--types", default="FLAT,IVF_FLAT,IVF_SQ8,HNSW,AUTOINDEX")
    ap.add_argument("--queries", type=int, default=200, help="Synthetic queries (real: every benchmark image).")
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--chunk", type=int, default=5000)
    args = ap.parse_args()
    if args.gaussian:
        base, queries = gaussian(args.gaussian, args.dim, args.queries)
        source = f"gaussian mixture, {args.gaussian} vectors"
    elif args.corpus and args.benchmark:
        base, queries, model = real_embeddings(args)
        source = f"{model} embeddings of {args.corpus} (index) and {args.benchmark} (queries)"
    else:
        ap.error("give --corpus and --benchmark (real embeddings) or --gaussian N")
    truth = np.argsort(-(queries @ base.T), axis=1)[:, : args.k]
    root = tempfile.mkdtemp(prefix="search_bench_")
    results = []
    for index_type in args.types.split(","):
        results.append(bench(index_type, base, queries, truth, args, root))
        print(json.dumps(results[-1]), flush=True)
    summary = {"source": source, "n": len(base), "queries": len(queries), "dim": base.shape[1], "k": args.k}
    print(json.dumps({**summary, "load_avg_1m_end": round(os.getloadavg()[0], 2), "results": results}, indent=2))


if __name__ == "__main__":
    main()
