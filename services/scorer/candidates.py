"""Candidate pairs (NER output) -> I2E records, no-entity drops, or dead letters with a reason.

The pure part of the scorer's Kafka stage: it decides, the stage adapter sends. A batch of records
is scored with one image forward pass so the stage runs at the model's batch throughput.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum

from mofi.i2e.records import InvalidRecord, pair_image_bytes, parse_record
from mofi.v1 import records_pb2
from mofi_platform.services.common.errors import InvalidInput
from mofi_platform.services.common.images import ImageDecoder
from mofi_platform.services.common.texts import validate_text
from mofi_platform.services.scorer.filtering import apply_threshold, candidate_texts
from mofi_platform.services.scorer.scoring import ClipScorer

__all__ = ["Kind", "Verdict", "CandidateScorer"]


class Kind(Enum):
    I2E = "i2e"  # at least one entity kept: goes to the I2E topic
    NO_ENTITY = "no_entity"  # the image shows none of the candidates: counted and dropped
    DEAD_LETTER = "dead_letter"  # the record itself is unusable


@dataclass(frozen=True)
class Verdict:
    kind: Kind
    record: records_pb2.I2ERecord | None = None
    reason: str = ""


class CandidateScorer:
    """Scores batches of serialized ``CandidatePair`` records against a threshold."""

    def __init__(
        self,
        scorer: ClipScorer,
        threshold: float,
        fetch: Callable[[str], bytes],
        decoder: ImageDecoder,
        max_text_chars: int,
    ):
        self.scorer = scorer
        self.threshold = threshold
        self.fetch = fetch
        self.decoder = decoder
        self.max_text_chars = max_text_chars

    def _prepare(self, value: bytes | None):
        cand = parse_record(value, records_pb2.CandidatePair)
        if not cand.pair.pair_id:
            raise InvalidRecord("record has no pair id")
        texts = candidate_texts(cand)
        for text in texts:
            try:
                validate_text(text, self.max_text_chars)
            except InvalidInput as e:
                raise InvalidInput(f"candidate text {text[:40]!r}: {e.reason}") from None
        data = pair_image_bytes(cand.pair, self.fetch, self.decoder.max_bytes)
        image = self.decoder.decode(data, self.scorer.image_size)
        return cand, image, texts

    def process(self, values: Sequence[bytes | None]) -> list[Verdict]:
        """One verdict per input value, in order."""
        verdicts: list[Verdict | None] = [None] * len(values)
        ready = []
        for i, value in enumerate(values):
            try:
                cand, image, texts = self._prepare(value)
            except (InvalidInput, InvalidRecord) as e:
                verdicts[i] = Verdict(Kind.DEAD_LETTER, reason=str(e))
                continue
            ready.append((i, cand, image, texts))
        scores = self.scorer.score_many([(image, texts) for _, _, image, texts in ready])
        for (i, cand, _, _), s in zip(ready, scores):
            rec = apply_threshold(cand, s, self.threshold, self.scorer.version)
            verdicts[i] = Verdict(Kind.I2E if rec.entities else Kind.NO_ENTITY, rec)
        return verdicts  # type: ignore[return-value]
