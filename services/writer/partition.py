"""Per-partition shard buffering and the recovery rule that makes shards exactly-once visible.

Why per partition: the Kafka key is the pair id, so every copy of a pair (a replay after an
upstream restart) lands on the same partition. One partition's writer therefore sees every
duplicate of its pairs, and its durable state can be rebuilt from its own manifests alone.

The rule, for partition P of topic T (shards at :func:`mofi.i2e.layout.shard_uri`):

* On assignment, the writer reads every manifest of P and rebuilds ``done`` (pair ids already in a
  complete shard) and ``covered`` (highest offset already inside a complete shard).
* A record is added to the buffer only if its offset is above ``covered`` and its pair id is not in
  ``done`` nor already buffered. Anything else is already visible, or a duplicate.
* A flush writes the tar, then the manifest (with the offsets it covers); only then is the offset
  after the shard committed. A kill before the manifest leaves an invisible tar (rewritten under the
  same name on replay, which restarts at the same committed offset); a kill after the manifest but
  before the commit replays records that the first rule then skips.

So each pair appears in at most one complete shard (no duplicates) and every consumed pair is
either in a complete shard or still uncommitted in Kafka (no loss). This assumes one live owner per
partition, which the consumer group provides.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from enum import Enum

from mofi.i2e import MANIFEST_SUFFIX, I2ESample, write_shard
from mofi.i2e.layout import partition_prefix, shard_uri
from mofi.objstore import ObjectStore

__all__ = ["Offer", "PartitionShards"]


class Offer(Enum):
    """What happened to a record offered to a partition's buffer."""

    ADDED = "added"
    DURABLE = "already in a complete shard"
    DUPLICATE = "duplicate pair id"


@dataclass
class PartitionShards:
    """Buffered samples of one partition plus what its complete shards already hold."""

    prefix_uri: str
    topic: str
    partition: int
    done: set[str] = field(default_factory=set)
    covered: int = -1
    buffer: list[tuple[int, I2ESample]] = field(default_factory=list)
    buffered_ids: set[str] = field(default_factory=set)
    started_at: float | None = None

    @classmethod
    def recover(cls, store: ObjectStore, prefix_uri: str, topic: str, partition: int) -> PartitionShards:
        """Rebuild ``done`` and ``covered`` from this partition's manifests."""
        state = cls(prefix_uri, topic, partition)
        for uri in store.list(partition_prefix(prefix_uri, topic, partition)):
            if uri.endswith(MANIFEST_SUFFIX):
                m = json.loads(store.get_bytes(uri))
                state.done.update(m["pair_ids"])
                state.covered = max(state.covered, int(m["last_offset"]))
        return state

    def offer(self, offset: int, sample: I2ESample, now: float | None = None) -> Offer:
        if offset <= self.covered or sample.pair_id in self.done:
            return Offer.DURABLE
        if sample.pair_id in self.buffered_ids:
            return Offer.DUPLICATE
        if not self.buffer:
            self.started_at = time.monotonic() if now is None else now
        self.buffer.append((offset, sample))
        self.buffered_ids.add(sample.pair_id)
        return Offer.ADDED

    def due(self, shard_size: int, interval_s: float, now: float | None = None) -> bool:
        """Full, or the oldest buffered record has waited ``interval_s``."""
        if not self.buffer:
            return False
        now = time.monotonic() if now is None else now
        return len(self.buffer) >= shard_size or now - (self.started_at or now) >= interval_s

    def shard_uri(self) -> str:
        return shard_uri(self.prefix_uri, self.topic, self.partition, self.buffer[0][0])

    def flush(self, store: ObjectStore, last_offset: int) -> dict:
        """Write the buffer as one shard covering offsets up to ``last_offset``; returns its manifest.

        ``last_offset`` may exceed the last buffered record (records after it were duplicates or dead
        letters): recording it lets a replay skip them without consulting anything else.
        """
        uri = self.shard_uri()
        manifest = write_shard(
            store,
            uri,
            [s for _, s in self.buffer],
            extra={
                "topic": self.topic,
                "partition": self.partition,
                "first_offset": self.buffer[0][0],
                "last_offset": last_offset,
            },
        )
        self.done.update(self.buffered_ids)
        self.covered = max(self.covered, last_offset)
        self.buffer.clear()
        self.buffered_ids.clear()
        self.started_at = None
        return manifest
