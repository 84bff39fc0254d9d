"""The indexer Kafka stage: new I2E records (``kafka.i2e_topic``) go into the live collection.

Why upsert into the alias's current collection: records arrive one poll at a time, and the pair id
is the primary key, so a replay after a crash overwrites the same row (at-least-once is enough). A
record that is not an I2E record, has no image or has an undecodable one goes to the dead-letter
topic with the reason.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from kafka.consumer.fetcher import ConsumerRecord

from mofi.i2e.records import InvalidRecord, pair_image_bytes, parse_record
from mofi.settings import Settings
from mofi_platform.services.common.stage import KafkaStage, Outcome
from mofi_platform.services.embedder.indexing import ImageItem, rows_for
from mofi_platform.services.embedder.models import ModelHolder
from mofi_platform.services.embedder.vectors import VectorStore

__all__ = ["IndexerHandler", "build_indexer_stage", "STAGE_NAME"]

STAGE_NAME = "indexer"


class IndexerHandler:
    """``handle(records) -> outcomes`` for :class:`KafkaStage`."""

    def __init__(
        self,
        holder: ModelHolder,
        vectors: VectorStore,
        fetch: Callable[[str], bytes],
        decode: Callable[[bytes], object],
        max_image_bytes: int,
        thumbnails: bool = True,
        seal_every: int = 1024,
    ):
        self.holder = holder
        self.vectors = vectors
        self.fetch = fetch
        self.decode = decode
        self.max_image_bytes = max_image_bytes
        self.thumbnails = thumbnails
        self.seal_every = seal_every
        self._unsealed = 0

    def _item(self, value: bytes | None) -> ImageItem:
        rec = parse_record(value)
        pair = rec.pair
        if not pair.pair_id:
            raise InvalidRecord("record has no pair id")
        image = pair_image_bytes(pair, self.fetch, self.max_image_bytes)
        return ImageItem(
            pair.pair_id,
            image,
            [e.entity_id for e in rec.entities],
            [e.name for e in rec.entities],
            pair.source,
            pair.text,
        )

    def _holder_for(self, collection: str) -> ModelHolder:
        """The model that built ``collection``: new rows must be comparable with the rows already there."""
        version, checkpoint = self.vectors.built_by(collection)
        if not version or version == self.holder.version:
            return self.holder
        return ModelHolder(self.holder.model_for(version, checkpoint), uri=checkpoint)

    def __call__(self, records: Sequence[ConsumerRecord]) -> list[Outcome]:
        outcomes: list[Outcome | None] = [None] * len(records)
        items: list[tuple[int, ImageItem]] = []
        for i, r in enumerate(records):
            try:
                items.append((i, self._item(r.value)))
            except InvalidRecord as e:
                outcomes[i] = Outcome.dead(str(e))
        if not items:
            return outcomes  # type: ignore[return-value]
        collection = self.vectors.ensure_current(self.holder.dim, self.holder.version, self.holder.uri)
        rows, skipped = rows_for(self._holder_for(collection), [it for _, it in items], self.decode, self.thumbnails)
        reasons = dict(skipped)
        for i, item in items:
            outcomes[i] = Outcome.dead(reasons[item.pair_id]) if item.pair_id in reasons else Outcome()
        if rows:
            self.vectors.upsert(collection, rows)
            self._unsealed += len(rows)
            if self._unsealed >= self.seal_every:  # unsealed rows are searched without the index
                self.vectors.seal(collection)
                self._unsealed = 0
        return outcomes  # type: ignore[return-value]


def build_indexer_stage(settings: Settings, handler: IndexerHandler, **consumer_kw) -> KafkaStage:
    return KafkaStage(settings.kafka, STAGE_NAME, [settings.kafka.i2e_topic], [], handler, consumer_kw=consumer_kw)
