"""Which candidate entities does the image show? Threshold the CLIP scores of one candidate pair.

This is the step that turns noisy text-derived candidates into I2E supervision: an entity named in
the alt-text is kept only if the image-text cosine of its "name: description" text reaches the
threshold (calibrated on the corpus by ``mofi clip bootstrap``).
"""

from __future__ import annotations

from collections.abc import Sequence

from mofi.v1 import records_pb2
from mofi_platform.services.scorer.scoring import entity_text

__all__ = ["candidate_texts", "apply_threshold"]


def _unique(cands: Sequence[records_pb2.EntityCandidate]) -> list[records_pb2.EntityCandidate]:
    """One candidate per entity (several mentions may link to the same one): the best-linked copy."""
    best: dict[str, records_pb2.EntityCandidate] = {}
    for c in cands:
        if c.entity_id not in best or c.link_score > best[c.entity_id].link_score:
            best[c.entity_id] = c
    return list(best.values())


def candidate_texts(pair: records_pb2.CandidatePair) -> list[str]:
    """The texts to score, one per unique candidate entity, in :func:`apply_threshold`'s order."""
    return [entity_text(c.name, c.description) for c in _unique(pair.candidates)]


def apply_threshold(
    pair: records_pb2.CandidatePair, scores: Sequence[float], threshold: float, scorer_model: str
) -> records_pb2.I2ERecord:
    """The I2E record: candidates with score >= threshold in ``entities`` (best first), others in ``dropped``.

    ``scores`` are the cosines of :func:`candidate_texts`. A record whose ``entities`` is empty is a
    pair the image does not support; the caller counts it instead of emitting it.
    """
    cands = _unique(pair.candidates)
    if len(cands) != len(scores):
        raise ValueError(f"{len(scores)} scores for {len(cands)} candidates")
    rec = records_pb2.I2ERecord(pair=pair.pair, scorer_model=scorer_model, kb_version=pair.kb_version)
    for c, s in sorted(zip(cands, scores), key=lambda t: -float(t[1])):
        out = records_pb2.EntityCandidate()
        out.CopyFrom(c)
        out.clip_score = float(s)
        (rec.entities if float(s) >= threshold else rec.dropped).append(out)
    return rec
