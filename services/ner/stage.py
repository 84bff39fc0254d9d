"""The NER Kafka stage: pairs topic (``Pair``) -> candidates topic (``CandidatePair``), keyed by pair id.

Malformed records (not a Pair, no pair id, bad text) go to the dead-letter topic with the reason.
Delivery guarantees come from :class:`~mofi_platform.services.common.stage.KafkaStage`.
"""

from __future__ import annotations

from collections.abc import Sequence

from google.protobuf.message import DecodeError
from kafka.consumer.fetcher import ConsumerRecord

from mofi.settings import Settings
from mofi.v1 import records_pb2
from mofi_platform.services.common.errors import InvalidInput
from mofi_platform.services.common.stage import Emit, KafkaStage, Outcome
from mofi_platform.services.common.texts import validate_text
from mofi_platform.services.ner.extractor import Extractor
from mofi_platform.services.ner.service import to_proto

__all__ = ["NerHandler", "build_ner_stage", "STAGE_NAME", "parse_pair"]

STAGE_NAME = "ner"


def parse_pair(value: bytes | None, max_chars: int) -> records_pb2.Pair:
    """Record bytes -> Pair with a valid pair id and text, or InvalidInput with the reason."""
    if not value:
        raise InvalidInput("empty record")
    pair = records_pb2.Pair()
    try:
        pair.ParseFromString(value)
    except DecodeError as e:
        raise InvalidInput(f"not a mofi.v1.Pair: {e}") from None
    if not pair.pair_id:
        raise InvalidInput("pair has no pair_id")
    try:
        validate_text(pair.text, max_chars)
    except InvalidInput as e:
        raise InvalidInput(f"pair {pair.pair_id}: {e.reason}") from None
    return pair


class NerHandler:
    """Records -> outcomes for :class:`KafkaStage`: one spaCy/MiniLM pass over the poll's valid texts."""

    def __init__(self, extractor: Extractor, output_topic: str):
        self.extractor = extractor
        self.output_topic = output_topic

    def __call__(self, records: Sequence[ConsumerRecord]) -> list[Outcome]:
        outcomes: list[Outcome | None] = [None] * len(records)
        pairs: dict[int, records_pb2.Pair] = {}
        for i, record in enumerate(records):
            try:
                pairs[i] = parse_pair(record.value, self.extractor.cfg.max_text_chars)
            except InvalidInput as e:
                outcomes[i] = Outcome.dead(e.reason)
        extractions = self.extractor.extract([p.text for p in pairs.values()])
        for (i, pair), extraction in zip(pairs.items(), extractions):
            mentions, candidates = to_proto(extraction)
            out = records_pb2.CandidatePair(
                pair=pair, mentions=mentions, candidates=candidates, kb_version=self.extractor.kb.version
            )
            outcomes[i] = Outcome((Emit(self.output_topic, pair.pair_id.encode(), out.SerializeToString()),))
        return outcomes


def build_ner_stage(settings: Settings, extractor: Extractor, **consumer_kw) -> KafkaStage:
    k = settings.kafka
    return KafkaStage(
        k, STAGE_NAME, [k.pairs_topic], [k.candidates_topic], NerHandler(extractor, k.candidates_topic), consumer_kw
    )
