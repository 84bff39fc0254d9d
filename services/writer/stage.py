"""The writer stage: I2E topic -> WebDataset shards in the I2E bucket, offsets committed after manifests.

Why not the generic consume-process-produce loop: the writer's output is a shard that spans many
polls, so a partition's offsets may be committed only when its shard is durable, and a rebalance
must discard (not commit) what was buffered. The exactly-once argument is in
:mod:`mofi_platform.services.writer.partition`.

Faults are ridden out as in :mod:`mofi_platform.services.common.stage` (same loop, backoff and heartbeat);
S3 errors count as transient too. After one, the writer starts over from durable state: buffers are
dropped, every assigned partition is recovered from its manifests and rewound to its committed offset.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter as Tally
from dataclasses import dataclass

from kafka import ConsumerRebalanceListener, KafkaConsumer, TopicPartition
from kafka.structs import OffsetAndMetadata
from prometheus_client import Counter

from mofi.i2e.layout import shards_prefix
from mofi.i2e.records import InvalidRecord, parse_record, record_to_sample
from mofi.kafka import Backoff, ensure_topics, flush, make_consumer, make_producer, retrying, send_dead_letter
from mofi.objstore import ObjectStore
from mofi.settings import Settings
from mofi_platform.services.common.stage import StageLoop, is_transient, rewind
from mofi_platform.services.writer.partition import PartitionShards

__all__ = ["WriterStage", "WriterStats", "STAGE_NAME"]

STAGE_NAME = "writer"
log = logging.getLogger(__name__)

RECORDS = Counter("mofi_writer_records_total", "I2E records consumed by the writer, by outcome", ["outcome"])
SHARDS = Counter("mofi_writer_shards_total", "Complete I2E shards written (tar + manifest)")


@dataclass
class WriterStats:
    """What this process did since it started (the durable truth is in the manifests)."""

    outcomes: Tally
    shards: int = 0


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, stage: WriterStage):
        self.stage = stage

    def on_partitions_revoked(self, revoked):
        self.stage._revoke(revoked)

    def on_partitions_assigned(self, assigned):
        self.stage._assign(assigned)


class WriterStage:
    """Consume ``settings.kafka.i2e_topic`` in group ``<group_prefix>-writer`` and write shards."""

    def __init__(self, settings: Settings, store: ObjectStore | None = None):
        self.settings = settings
        self.kcfg = settings.kafka
        self.wcfg = settings.writer
        self.store = store or ObjectStore(settings.s3)
        self.prefix_uri = shards_prefix(settings)
        self.parts: dict[TopicPartition, PartitionShards] = {}
        self.consumed: dict[TopicPartition, int] = {}  # highest offset processed, not yet committed
        self.stats = WriterStats(Tally())
        self._stop = threading.Event()
        self._closed = False
        self.pending: list = []  # dead letters sent since the last flush
        backoff = Backoff.from_settings(self.kcfg)
        topics = [self.kcfg.i2e_topic, self.kcfg.dead_letter_topic]
        retrying("writer: creating topics", lambda: ensure_topics(self.kcfg, topics), backoff)
        self.producer = retrying("writer: connecting the producer", lambda: make_producer(self.kcfg), backoff)
        self.consumer = self._connect()
        bucket = self.settings.s3.i2e_bucket
        retrying("writer: creating the I2E bucket", lambda: self.store.ensure_bucket(bucket), backoff, is_transient)
        self.loop = StageLoop(
            STAGE_NAME, self.kcfg, self.poll_once, self._rewind, lambda: self.consumer, self._reconnect
        )

    def _connect(self) -> KafkaConsumer:
        group = f"{self.kcfg.group_prefix}-{STAGE_NAME}"
        consumer = retrying(
            "writer: connecting the consumer",
            lambda: make_consumer(self.kcfg, group, [self.kcfg.i2e_topic]),
            Backoff.from_settings(self.kcfg),
        )
        consumer.subscribe([self.kcfg.i2e_topic], listener=_Rebalance(self))
        return consumer

    def _reconnect(self) -> None:
        """A new consumer in the same group; what was buffered is dropped and read again."""
        self.consumer.close(autocommit=False, timeout_ms=5000)
        self._revoke(list(self.parts))
        self.pending.clear()
        self.consumer = self._connect()

    # -- rebalance -----------------------------------------------------------------------------
    def _revoke(self, revoked) -> None:
        for tp in revoked:  # uncommitted work goes back to Kafka for the next owner
            self.parts.pop(tp, None)
            self.consumed.pop(tp, None)

    def _assign(self, assigned) -> None:
        for tp in assigned:
            if tp not in self.parts:
                self.parts[tp] = PartitionShards.recover(self.store, self.prefix_uri, tp.topic, tp.partition)

    def _rewind(self) -> None:
        """Forget everything not durable and resume each partition from its manifests and committed offset."""
        self.parts.clear()
        self.consumed.clear()
        self.pending.clear()
        for tp in self.consumer.assignment():
            self.parts[tp] = PartitionShards.recover(self.store, self.prefix_uri, tp.topic, tp.partition)
        rewind(self.consumer)

    # -- processing ----------------------------------------------------------------------------
    def _count(self, outcome: str) -> None:
        self.stats.outcomes[outcome] += 1
        RECORDS.labels(outcome).inc()

    def _handle(self, tp: TopicPartition, msg) -> None:
        part = self.parts.get(tp)
        if part is None:  # assigned without the listener having run (cannot normally happen)
            part = self.parts[tp] = PartitionShards.recover(self.store, self.prefix_uri, tp.topic, tp.partition)
        try:
            sample = record_to_sample(parse_record(msg.value), self.store.get_bytes)
        except InvalidRecord as e:
            if msg.offset > part.covered:  # a replayed dead letter was already sent before the last shard
                self.pending.append(
                    send_dead_letter(self.producer, self.kcfg, msg.value, msg.key, str(e), STAGE_NAME, tp.topic)
                )
            self._count("dead_letter")
        else:
            self._count(part.offer(msg.offset, sample).name.lower())
        self.consumed[tp] = msg.offset

    def _commit(self, tp: TopicPartition) -> None:
        self.consumer.commit({tp: OffsetAndMetadata(self.consumed.pop(tp) + 1, "", -1)})

    def _flush_producer(self) -> None:
        """Raise unless every dead letter sent so far is acknowledged."""
        flush(self.producer, self.pending, self.kcfg.flush_timeout_s)
        self.pending.clear()

    def _flush_due(self, force: bool = False) -> None:
        """Write due shards, then commit every partition whose consumed records are all durable."""
        ready = []
        for tp, part in list(self.parts.items()):
            if tp not in self.consumed:
                continue
            if part.buffer and (force or part.due(self.wcfg.shard_size, self.wcfg.flush_interval_s)):
                self._flush_producer()  # dead letters before the shard's offsets are committed
                manifest = part.flush(self.store, self.consumed[tp])
                self.stats.shards += 1
                SHARDS.inc()
                log.info("shard %s: %d pairs", manifest["shard"], manifest["count"])
            if not part.buffer:
                ready.append(tp)
        if ready:
            self._flush_producer()
            for tp in ready:
                self._commit(tp)

    def poll_once(self, timeout_ms: int = 500) -> int:
        """One poll, then flush and commit what is due; returns the number of records handled."""
        batches = self.consumer.poll(timeout_ms=timeout_ms)
        n = 0
        for tp, msgs in batches.items():
            for msg in msgs:
                self._handle(tp, msg)
                n += 1
        self._flush_due()
        return n

    def stop(self) -> None:
        self._stop.set()

    def run(self, idle_exit_s: float | None = None) -> WriterStats:
        """Until :meth:`stop` (or ``idle_exit_s`` without records once assigned): poll, write, commit.

        On stop, partial shards are flushed and committed, so a clean shutdown leaves nothing behind.
        """
        last = time.monotonic()

        def done(n: int) -> bool:
            nonlocal last
            if n or not self.consumer.assignment():  # idle counts only once partitions are ours
                last = time.monotonic()
            return idle_exit_s is not None and time.monotonic() - last > idle_exit_s

        self.loop.run(self._stop, done)
        try:
            self._flush_due(force=True)
        except Exception as e:
            if not is_transient(e):
                raise
            log.warning("writer: partial shards not written on stop (%s); their records stay uncommitted", e)
        self.close()
        return self.stats

    def close(self) -> None:
        """Flush and close the clients; idempotent (:meth:`run` closes, and so does a process runner)."""
        if self._closed:
            return
        self._closed = True
        self.producer.close(timeout=self.kcfg.flush_timeout_s)  # flushes what it can; the broker may be away
        self.consumer.close(autocommit=False)
