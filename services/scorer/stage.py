"""The scorer's Kafka stage: candidates topic -> I2E topic; no-entity pairs persisted; dead letters.

Runs on :class:`mofi_platform.services.common.stage.KafkaStage` (at-least-once: a poll's outputs are acknowledged
before its offsets are committed). A pair the image does not support is written to the no-entity
record (:mod:`mofi_platform.services.scorer.drops`) inside the handler, so it too is durable before the commit;
replays are harmless because that object and the writer's dedupe are keyed by pair id.
"""

from __future__ import annotations

from collections.abc import Sequence

from kafka.consumer.fetcher import ConsumerRecord
from prometheus_client import Counter

from mofi.objstore import ObjectStore
from mofi.settings import Settings
from mofi_platform.services.common.stage import Emit, KafkaStage, Outcome
from mofi_platform.services.scorer.candidates import CandidateScorer, Kind
from mofi_platform.services.scorer.drops import record_no_entity_many

__all__ = ["CandidateHandler", "scorer_stage", "STAGE_NAME"]

STAGE_NAME = "scorer"

PAIRS = Counter("mofi_scorer_pairs_total", "Candidate pairs handled by the scorer stage, by verdict", ["verdict"])
ENTITIES = Counter("mofi_scorer_entities_total", "Candidate entities scored, by decision", ["decision"])


class CandidateHandler:
    """``KafkaStage`` handler: score a poll's candidate pairs in one batch; ``counts`` per verdict."""

    def __init__(self, settings: Settings, core: CandidateScorer, store: ObjectStore):
        self.i2e_topic = settings.kafka.i2e_topic
        self.bucket = settings.s3.i2e_bucket
        self.core = core
        self.store = store
        self.counts = {k.value: 0 for k in Kind}
        store.ensure_bucket(self.bucket)

    def __call__(self, records: Sequence[ConsumerRecord]) -> list[Outcome]:
        out, dropped = [], []
        for verdict in self.core.process([r.value for r in records]):
            self.counts[verdict.kind.value] += 1
            PAIRS.labels(verdict.kind.value).inc()
            if verdict.kind is Kind.DEAD_LETTER:
                out.append(Outcome.dead(verdict.reason))
                continue
            rec = verdict.record
            ENTITIES.labels("kept").inc(len(rec.entities))
            ENTITIES.labels("dropped").inc(len(rec.dropped))
            if verdict.kind is Kind.I2E:
                out.append(Outcome(emits=(Emit(self.i2e_topic, rec.pair.pair_id.encode(), rec.SerializeToString()),)))
            else:
                dropped.append(rec)
                out.append(Outcome())
        record_no_entity_many(self.store, self.bucket, dropped)  # durable before the stage commits
        return out


def scorer_stage(settings: Settings, core: CandidateScorer, store: ObjectStore) -> tuple[KafkaStage, CandidateHandler]:
    """The stage (consumer group ``<group_prefix>-scorer``) and its handler (for its counts)."""
    handler = CandidateHandler(settings, core, store)
    stage = KafkaStage(
        settings.kafka, STAGE_NAME, [settings.kafka.candidates_topic], [settings.kafka.i2e_topic], handler
    )
    return stage, handler
