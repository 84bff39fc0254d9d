"""Scoring core and thresholding, on the tiny model."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from mofi.v1 import records_pb2
from services.scorer.filtering import apply_threshold, candidate_texts
from services.scorer.scoring import ClipScorer, entity_text


class CountingModel:
    """The real model, counting the texts and images that reach it (to observe the cache and skips)."""

    def __init__(self, inner):
        self.inner, self.version, self.texts_embedded, self.images_embedded = inner, inner.version, 0, 0

    def embed_images(self, images):
        self.images_embedded += len(images)
        return self.inner.embed_images(images)

    def embed_texts(self, texts):
        self.texts_embedded += len(texts)
        return self.inner.embed_texts(texts)


def test_entity_text():
    assert entity_text("Eiffel Tower ", " a tower in Paris") == "Eiffel Tower: a tower in Paris"
    assert entity_text("tiger", "") == "tiger"


def test_scores_are_cosines_and_batching_changes_nothing(tiny_embedding_model):
    m = tiny_embedding_model
    scorer = ClipScorer(CountingModel(m))
    images = [Image.new("RGB", (20, 20), (i * 60, 255 - i * 60, 10)) for i in range(4)]
    texts = [["tiger: a big cat", "Normandy: a region"], ["tiger: a big cat"], [], ["Eiffel Tower: a tower"]]
    batched = scorer.score_many(list(zip(images, texts)))
    for im, ts, got in zip(images, texts, batched):
        want = m.embed_texts(ts) @ m.embed_images([im])[0] if ts else np.zeros(0)
        np.testing.assert_allclose(got, want, atol=1e-5)
        single = scorer.score_many([(im, ts)])[0]
        np.testing.assert_allclose(single, got, atol=1e-5)
        assert got.dtype == np.float32 and got.shape == (len(ts),)
        assert np.all(np.abs(got) <= 1.0 + 1e-5)
    # three distinct texts were embedded once each, however often they were scored
    assert scorer.model.texts_embedded == 3
    # the image without texts never reached the model (3 of 4 in the batch, then 3 singles)
    assert scorer.model.images_embedded == 6
    assert scorer.score_many([(images[2], [])])[0].shape == (0,) and scorer.model.images_embedded == 6


def test_text_cache_is_bounded(tiny_embedding_model):
    scorer = ClipScorer(CountingModel(tiny_embedding_model), text_cache_size=2)
    im = Image.new("RGB", (8, 8))
    scorer.score_many([(im, ["a", "b", "c"])])
    assert len(scorer._cache) == 2
    scorer.score_many([(im, ["a"])])  # evicted: embedded again
    assert scorer.model.texts_embedded == 4


def _cand(eid: str, link: float = 0.9) -> records_pb2.EntityCandidate:
    return records_pb2.EntityCandidate(entity_id=eid, name=eid.upper(), description=f"about {eid}", link_score=link)


def test_threshold_keeps_shown_entities_best_first():
    pair = records_pb2.CandidatePair(pair=records_pb2.Pair(pair_id="p1"),
                                     candidates=[_cand("a"), _cand("b"), _cand("a", 0.95), _cand("c")])
    assert candidate_texts(pair) == ["A: about a", "B: about b", "C: about c"]
    rec = apply_threshold(pair, [0.25, 0.1, 0.31], threshold=0.2, scorer_model="m@1")
    assert [(e.entity_id, round(e.clip_score, 2)) for e in rec.entities] == [("c", 0.31), ("a", 0.25)]
    assert rec.entities[1].link_score == pytest.approx(0.95)  # the better-linked duplicate survives
    assert [e.entity_id for e in rec.dropped] == ["b"]
    assert rec.pair.pair_id == "p1" and rec.scorer_model == "m@1"
    none = apply_threshold(pair, [0.0, 0.0, 0.0], threshold=0.2, scorer_model="m@1")
    assert not none.entities and len(none.dropped) == 3
    with pytest.raises(ValueError, match="2 scores for 3"):
        apply_threshold(pair, [0.1, 0.2], 0.2, "m")
