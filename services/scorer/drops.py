"""The persisted record of pairs dropped because the image shows none of their candidate entities.

Why one object per pair (:func:`mofi.i2e.layout.no_entity_uri`) rather than a counter:
the scorer stage is at-least-once, so after a crash it may score a pair twice. Writing the same
key twice is idempotent, so the number of objects is the exact number of dropped pairs, and every
pair the pipeline consumed is accounted for (shard, dead letter, or here). The objects also keep
the rejected candidates and their scores, which is what threshold calibration looks at.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

from mofi.i2e.layout import no_entity_prefix, no_entity_uri
from mofi.objstore import ObjectStore
from mofi.v1 import records_pb2

__all__ = ["record_no_entity", "record_no_entity_many", "count_no_entity", "iter_no_entity"]


def record_no_entity(store: ObjectStore, i2e_bucket: str, rec: records_pb2.I2ERecord) -> None:
    body = {
        "pair_id": rec.pair.pair_id,
        "text": rec.pair.text,
        "source": rec.pair.source,
        "scorer_model": rec.scorer_model,
        "kb_version": rec.kb_version,
        "dropped": [{"id": c.entity_id, "name": c.name, "score": round(c.clip_score, 6)} for c in rec.dropped],
    }
    store.put_bytes(
        no_entity_uri(i2e_bucket, rec.pair.pair_id), json.dumps(body).encode(), content_type="application/json"
    )


def record_no_entity_many(
    store: ObjectStore, i2e_bucket: str, recs: Sequence[records_pb2.I2ERecord], workers: int = 8
) -> None:
    """:func:`record_no_entity` for many pairs at once: the PUTs are latency-bound, so they overlap."""
    if len(recs) <= 1:
        for rec in recs:
            record_no_entity(store, i2e_bucket, rec)
        return
    with ThreadPoolExecutor(min(workers, len(recs))) as pool:
        list(pool.map(lambda r: record_no_entity(store, i2e_bucket, r), recs))


def count_no_entity(store: ObjectStore, i2e_bucket: str) -> int:
    return sum(1 for _ in store.list(no_entity_prefix(i2e_bucket)))


def iter_no_entity(store: ObjectStore, i2e_bucket: str) -> Iterator[dict]:
    for uri in store.list(no_entity_prefix(i2e_bucket)):
        yield json.loads(store.get_bytes(uri))
