"""Scoring core and thresholding, on the tiny model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from mofi.v1 import records_pb2
from mofi_platform.services.common.images import ImageDecoder
from mofi_platform.services.scorer.candidates import CandidateScorer, Kind
from mofi_platform.services.scorer.filtering import apply_threshold, candidate_texts
from mofi_platform.services.scorer.scoring import ClipScorer, entity_text
from tests.writer.support import ENTITIES, candidate_pair


class CountingModel:
    """The real model, counting the texts and images that reach it (to observe the cache and skips)."""

    def __init__(self, inner):
        self.inner, self.version, self.texts_embedded, self.images_embedded = inner, inner.version, 0, 0
        self.image_size = inner.image_size

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
    pair = records_pb2.CandidatePair(
        pair=records_pb2.Pair(pair_id="p1"),
        candidates=[_cand("a"), _cand("b"), _cand("a", 0.95), _cand("c")],
        kb_version="kb-0123456789abcdef",
    )
    assert candidate_texts(pair) == ["A: about a", "B: about b", "C: about c"]
    rec = apply_threshold(pair, [0.25, 0.1, 0.31], threshold=0.2, scorer_model="m@1")
    assert [(e.entity_id, round(e.clip_score, 2)) for e in rec.entities] == [("c", 0.31), ("a", 0.25)]
    assert rec.entities[1].link_score == pytest.approx(0.95)  # the better-linked duplicate survives
    assert [e.entity_id for e in rec.dropped] == ["b"]
    assert rec.pair.pair_id == "p1" and rec.scorer_model == "m@1" and rec.kb_version == "kb-0123456789abcdef"
    none = apply_threshold(pair, [0.0, 0.0, 0.0], threshold=0.2, scorer_model="m@1")
    assert not none.entities and len(none.dropped) == 3
    with pytest.raises(ValueError, match="2 scores for 3"):
        apply_threshold(pair, [0.1, 0.2], 0.2, "m")


def _other_tiny_model(version: str):
    """The tiny architecture with different weights: another model version."""
    from mofi_platform.training import create_model_and_transforms, get_tokenizer
    from mofi_platform.training.inference import EmbeddingModel

    torch.manual_seed(1)
    model, _, eval_tf = create_model_and_transforms("mofi-tiny-vit")
    return EmbeddingModel.from_model(model, eval_tf, get_tokenizer("mofi-tiny-vit"), version, "mofi-tiny-vit")


def _verdicts(scorer: ClipScorer, values, threshold: float):
    return CandidateScorer(scorer, threshold, lambda uri: b"", ImageDecoder(1 << 20, 1 << 20), 2000).process(values)


def test_cached_text_embeddings_give_the_same_verdicts_as_uncached(tiny_embedding_model):
    """The same KB entities recur across pairs: cached, batched scoring must equal one-by-one uncached scoring."""
    values = [candidate_pair(i, n_candidates=3).SerializeToString() for i in range(16)]
    uncached = ClipScorer(CountingModel(tiny_embedding_model), text_cache_size=0, image_batch=1)
    threshold = float(np.median([e.clip_score for v in _verdicts(uncached, values, -1.0) for e in v.record.entities]))
    want = [_verdicts(uncached, [v], threshold)[0] for v in values]
    cached = ClipScorer(CountingModel(tiny_embedding_model), image_batch=4)
    got = _verdicts(cached, values[:5], threshold) + _verdicts(cached, values[5:], threshold)

    assert cached.model.texts_embedded == len(ENTITIES)  # each entity text embedded once, then served from the cache
    assert uncached.model.texts_embedded == len(ENTITIES) + 16 * 3  # uncached: every text of every single-pair call
    assert {v.kind for v in want} == {Kind.I2E, Kind.NO_ENTITY}
    for w, g in zip(want, got):
        assert w.kind is g.kind
        assert [e.entity_id for e in w.record.entities] == [e.entity_id for e in g.record.entities]
        assert [e.entity_id for e in w.record.dropped] == [e.entity_id for e in g.record.dropped]
        for a, b in zip([*w.record.entities, *w.record.dropped], [*g.record.entities, *g.record.dropped]):
            assert b.clip_score == pytest.approx(a.clip_score, abs=1e-5)


def test_reload_never_serves_the_previous_models_text_embeddings(tiny_embedding_model):
    texts = ["tiger: a big cat", "Paris: capital of France"]
    image = Image.new("RGB", (20, 20), (200, 30, 90))
    new = _other_tiny_model("tiny@v2")

    def direct(model):
        return model.embed_texts(texts) @ model.embed_images([image])[0]

    scorer = ClipScorer(CountingModel(tiny_embedding_model))
    np.testing.assert_allclose(scorer.score_many([(image, texts)])[0], direct(tiny_embedding_model), atol=1e-5)
    assert not np.allclose(direct(new), direct(tiny_embedding_model), atol=1e-3)  # the two models really differ

    scorer.reload(CountingModel(new))
    assert scorer.version == "tiny@v2"
    np.testing.assert_allclose(scorer.score_many([(image, texts)])[0], direct(new), atol=1e-5)
    assert scorer.model.texts_embedded == 2  # embedded again by the new model, not taken from the cache

    scorer.model = CountingModel(tiny_embedding_model)  # swapped without reload(): still no stale embeddings
    np.testing.assert_allclose(scorer.score_many([(image, texts)])[0], direct(tiny_embedding_model), atol=1e-5)
    assert scorer.model.texts_embedded == 2


def test_image_batch_changes_nothing_but_the_forward_pass_sizes(tiny_embedding_model):
    images = [Image.new("RGB", (16, 16), (i * 20, 100, 255 - i * 20)) for i in range(11)]
    items = [(im, ["tiger: a big cat"]) for im in images]
    one = ClipScorer(tiny_embedding_model, image_batch=64).score_many(items)
    model = CountingModel(tiny_embedding_model)
    sizes = []
    model.embed_images = lambda ims, f=model.embed_images: (sizes.append(len(ims)), f(ims))[1]
    chunked = ClipScorer(model, image_batch=4).score_many(items)
    assert sizes == [4, 4, 3]
    np.testing.assert_allclose(np.stack(chunked), np.stack(one), atol=1e-5)
    with pytest.raises(ValueError):
        ClipScorer(tiny_embedding_model, image_batch=0)
