"""The writer stage: I2E topic -> WebDataset shards in the I2E bucket, offsets committed after manifests.

Why not the generic consume-process-produce loop: the writer's output is a shard that spans many
polls, so a partition's offsets may be committed only when its shard is durable, and a rebalance
must discard (not commit) what was buffered. The exactly-once argument is in
:mod:`mofi_platform.services.writer.partition`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter as Tally
from dataclasses import dataclass

from kafka import ConsumerRebalanceListener, TopicPartition
from kafka.structs import OffsetAndMetadata
from prometheus_client import Counter
from tqdm import tqdm

from mofi.i2e.layout import shards_prefix
from mofi.i2e.records import InvalidRecord, parse_record, record_to_sample
from mofi.kafka import ensure_topics, make_consumer, make_producer, send_dead_letter
from mofi.objstore import ObjectStore
from mofi.settings import Settings
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
        ensure_topics(self.kcfg, [self.kcfg.i2e_topic, self.kcfg.dead_letter_topic])
        self.producer = make_producer(self.kcfg)
        self.consumer = make_consumer(self.kcfg, f"{self.kcfg.group_prefix}-{STAGE_NAME}", [self.kcfg.i2e_topic])
        self.consumer.subscribe([self.kcfg.i2e_topic], listener=_Rebalance(self))
        self.store.ensure_bucket(self.settings.s3.i2e_bucket)

    # -- rebalance -----------------------------------------------------------------------------
    def _revoke(self, revoked) -> None:
        for tp in revoked:  # uncommitted work goes back to Kafka for the next owner
            self.parts.pop(tp, None)
            self.consumed.pop(tp, None)

    def _assign(self, assigned) -> None:
        for tp in assigned:
            if tp not in self.parts:
                self.parts[tp] = PartitionShards.recover(self.store, self.prefix_uri, tp.topic, tp.partition)

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
                send_dead_letter(self.producer, self.kcfg, msg.value, msg.key, str(e), STAGE_NAME, tp.topic)
            self._count("dead_letter")
        else:
            self._count(part.offer(msg.offset, sample).name.lower())
        self.consumed[tp] = msg.offset

    def _commit(self, tp: TopicPartition) -> None:
        self.consumer.commit({tp: OffsetAndMetadata(self.consumed.pop(tp) + 1, "", -1)})

    def _flush_due(self, force: bool = False) -> None:
        """Write due shards, then commit every partition whose consumed records are all durable."""
        ready = []
        for tp, part in list(self.parts.items()):
            if tp not in self.consumed:
                continue
            if part.buffer and (force or part.due(self.wcfg.shard_size, self.wcfg.flush_interval_s)):
                self.producer.flush()  # dead letters before the shard's offsets are committed
                manifest = part.flush(self.store, self.consumed[tp])
                self.stats.shards += 1
                SHARDS.inc()
                log.info("shard %s: %d pairs", manifest["shard"], manifest["count"])
            if not part.buffer:
                ready.append(tp)
        if ready:
            self.producer.flush()
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
        with tqdm(desc="writer", unit="rec", mininterval=2.0) as bar:
            while not self._stop.is_set():
                n = self.poll_once()
                bar.update(n)
                if n or not self.consumer.assignment():  # idle counts only once partitions are ours
                    last = time.monotonic()
                elif idle_exit_s is not None and time.monotonic() - last > idle_exit_s:
                    break
        self._flush_due(force=True)
        self.close()
        return self.stats

    def close(self) -> None:
        """Flush and close the clients; idempotent (:meth:`run` closes, and so does a process runner)."""
        if self._closed:
            return
        self._closed = True
        self.producer.flush()
        self.producer.close()
        self.consumer.close(autocommit=False)
