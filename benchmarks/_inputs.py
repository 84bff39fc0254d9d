"""Real inputs shared by the benchmarks: the project's own corpus, in a seeded order.

Why the corpus and not synthetic data: decode cost, image sizes, text lengths and how many entity
candidates a text yields all shape the timings; noise images or repeated sentences measure something
easier. Scripts import this module from their own folder.
"""

from __future__ import annotations

import random

from mofi.objstore import ObjectStore
from mofi.settings import S3Settings
from mofi_platform.databuild.corpus import CorpusSample, iter_corpus

__all__ = ["corpus_samples"]


def corpus_samples(corpus: str, seed: int = 0, n: int = 0) -> list[CorpusSample]:
    """The samples of the corpus shards under ``corpus`` (local folder or s3:// prefix), shuffled with
    ``seed``; the first ``n`` of them when ``n > 0``."""
    samples = list(iter_corpus(ObjectStore(S3Settings()), corpus))
    if not samples:
        raise SystemExit(f"no corpus shards under {corpus} (run `mofi data build` first)")
    random.Random(seed).shuffle(samples)
    return samples[:n] if n > 0 else samples
