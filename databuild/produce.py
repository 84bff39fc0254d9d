"""`mofi produce`: stream corpus pairs into the ingestion topic as ``mofi.v1.Pair`` records (schema mofi.pair.v1).

Why images inline up to a limit and by reference above it: Kafka records stay small enough for the
broker's limits and the consumers' fetch sizes, while most corpus images (a few KB to tens of KB)
travel with their text and need no second round trip. The key is the pair id, so a replay lands on
the same partition and downstream stages dedupe by it.

Why acknowledgement callbacks rather than a list of futures: a source of millions of pairs must not
hold a future per pair, and a resumable source (:mod:`~mofi_platform.databuild.ingest`) needs to know
each pair the broker confirmed, as it is confirmed.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from tqdm import tqdm

from mofi.objstore import ObjectStore
from mofi.settings import KafkaSettings, S3Settings
from mofi.v1 import records_pb2
from mofi_platform.databuild.corpus import CorpusSample

__all__ = ["PAIR_SCHEMA", "ProduceStats", "pair_record", "produce_pairs", "produce_acked", "image_ref_uri"]

PAIR_SCHEMA = "mofi.pair.v1"
_EXT = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp"}


@dataclass
class ProduceStats:
    sent: int = 0
    inline: int = 0
    by_reference: int = 0
    bytes: int = 0
    seconds: float = 0.0


def image_ref_uri(s3: S3Settings, sample: CorpusSample) -> str:
    return f"s3://{s3.corpus_bucket}/images/{sample.pair_id}.{_EXT.get(sample.mime, 'bin')}"


def pair_record(sample: CorpusSample, s3: S3Settings, store: ObjectStore) -> records_pb2.Pair:
    """The Pair record for a sample; an image above ``s3.inline_image_max_bytes`` is uploaded first."""
    rec = records_pb2.Pair(
        pair_id=sample.pair_id,
        text=sample.text,
        source=sample.source,
        licence=sample.licence,
        original_path=sample.original_path,
        image_mime=sample.mime,
        schema=PAIR_SCHEMA,
    )
    if len(sample.image_bytes) <= s3.inline_image_max_bytes:
        rec.image_bytes = sample.image_bytes
    else:
        uri = image_ref_uri(s3, sample)
        store.put_bytes(uri, sample.image_bytes, sample.mime)
        rec.image_ref.CopyFrom(
            records_pb2.ObjectRef(
                uri=uri, size_bytes=len(sample.image_bytes), sha256=hashlib.sha256(sample.image_bytes).hexdigest()
            )
        )
    return rec


def produce_pairs(
    samples: Iterable[CorpusSample],
    producer,
    kcfg: KafkaSettings,
    s3: S3Settings,
    store: ObjectStore,
    *,
    rate: float = 0.0,
    limit: int = 0,
    total: int | None = None,
) -> ProduceStats:
    """Send every sample (see :func:`produce_acked`)."""
    return produce_acked(((s, None) for s in samples), producer, kcfg, s3, store, rate=rate, limit=limit, total=total)


def produce_acked(
    items: Iterable[tuple[CorpusSample, Callable[[], None] | None]],
    producer,
    kcfg: KafkaSettings,
    s3: S3Settings,
    store: ObjectStore,
    *,
    rate: float = 0.0,
    limit: int = 0,
    total: int | None = None,
    tick: Callable[[], None] | None = None,
) -> ProduceStats:
    """Send every sample (at most ``rate`` per second when > 0, at most ``limit`` when > 0), calling its
    callback once the broker acknowledged it, and ``tick`` after each send; then flush.

    Raises the first delivery error after the flush, so a broken broker never looks like success.
    """
    stats = ProduceStats()
    errors: list[Exception] = []
    lock = threading.Lock()

    def failed(error: Exception) -> None:
        with lock:
            errors.append(error)

    start = time.monotonic()
    bar = tqdm(total=limit or total, desc="produce", unit="pair")
    try:
        for n, (sample, acked) in enumerate(items, 1):
            rec = pair_record(sample, s3, store)
            value = rec.SerializeToString()
            future = producer.send(kcfg.pairs_topic, key=sample.pair_id.encode(), value=value)
            if acked is not None:
                future.add_callback(lambda _metadata, acked=acked: acked())
            future.add_errback(failed)
            bar.update()
            stats.sent += 1
            stats.bytes += len(value)
            if rec.WhichOneof("image") == "image_ref":
                stats.by_reference += 1
            else:
                stats.inline += 1
            if tick is not None:
                tick()
            if rate > 0:
                ahead = start + n / rate - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)
            if limit and n >= limit:
                break
    finally:
        bar.close()
        producer.flush()
    if errors:
        raise errors[0]
    stats.seconds = time.monotonic() - start
    return stats
