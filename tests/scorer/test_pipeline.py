"""Candidates -> scorer stage -> writer -> shards, through the real broker and S3 server.

Every produced pair must end in exactly one place: an I2E shard, the dead-letter topic (with a
reason) or the no-entity record; the totals must match what was produced.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from mofi.i2e import iter_shard, list_shards
from mofi.kafka import ensure_topics, make_producer
from mofi_platform.services.scorer.app import build_stage
from mofi_platform.services.scorer.drops import count_no_entity
from mofi_platform.services.scorer.filtering import candidate_texts
from mofi_platform.services.scorer.scoring import ClipScorer
from mofi_platform.services.writer.stage import WriterStage
from tests.writer.support import account, bad_candidate_records, candidate_pair, png


def _scores(scorer: ClipScorer, cand) -> dict[str, float]:
    """entity id -> cosine, computed directly (one candidate per entity in these fixtures)."""
    image = Image.open(io.BytesIO(cand.pair.image_bytes)).convert("RGB")
    scores = scorer.score_many([(image, candidate_texts(cand))])[0]
    return {e.entity_id: float(s) for e, s in zip(cand.candidates, scores)}


def test_every_pair_ends_in_a_shard_a_dead_letter_or_the_no_entity_count(settings, store, tiny_embedding_model):
    scorer = ClipScorer(tiny_embedding_model)
    cands = [candidate_pair(i) for i in range(24)]
    scores = {c.pair.pair_id: _scores(scorer, c) for c in cands}
    threshold = settings.scorer.threshold = float(np.median([max(s.values()) for s in scores.values()]))
    settings.writer.shard_size = 5
    settings.writer.flush_interval_s = 0.5
    expected = {p: sorted(e for e, v in s.items() if v >= threshold) for p, s in scores.items()}
    bad = bad_candidate_records()
    oversized = candidate_pair(9100)
    oversized.pair.image_bytes = png(9100, size=(3000, 3000))
    settings.data.max_pixels = 1_000_000
    bad[oversized.pair.pair_id.encode()] = oversized.SerializeToString()

    ensure_topics(settings.kafka, [settings.kafka.candidates_topic])
    prod = make_producer(settings.kafka)
    for c in cands:
        prod.send(settings.kafka.candidates_topic, key=c.pair.pair_id.encode(), value=c.SerializeToString())
    for key, value in bad.items():
        prod.send(settings.kafka.candidates_topic, key=key, value=value)
    prod.flush()

    stage, handler = build_stage(settings, scorer, store)
    stage.run(max_records=len(cands) + len(bad), idle_exit_s=30)
    stage.close()
    WriterStage(settings, store).run(idle_exit_s=3)

    acc = account(settings, store)
    kept = {p for p, ids in expected.items() if ids}
    assert 0 < len(kept) < len(cands)
    assert sorted(acc.shard_ids) == sorted(kept)
    assert acc.no_entity == set(expected) - kept
    assert count_no_entity(store, settings.s3.i2e_bucket) == len(cands) - len(kept)
    assert set(acc.dead_letters) == {k.decode() for k in bad}
    assert all(reason for reason in acc.dead_letters.values())
    assert "pixels" in acc.dead_letters[oversized.pair.pair_id]
    assert acc.dead_letters[candidate_pair(9002).pair.pair_id] == "unsupported image mime 'image/svg+xml'"
    assert (
        acc.dead_letters[candidate_pair(9003).pair.pair_id]
        == "image declared as 'image/jpeg' but its bytes are image/png"
    )
    assert len(acc.shard_ids) + len(acc.no_entity) + len(acc.dead_letters) == len(cands) + len(bad)
    prefix = f"s3://{settings.s3.i2e_bucket}/{settings.writer.prefix}"
    for sample in (s for uri in list_shards(store, prefix) for s in iter_shard(store, uri)):
        got = {e["id"]: e["score"] for e in sample.meta["entities"]}
        assert sorted(got) == expected[sample.pair_id]
        assert all(abs(v - scores[sample.pair_id][e]) < 1e-4 for e, v in got.items())
        dropped = {e["id"]: e["score"] for e in sample.meta["dropped"]}  # the image's other candidates
        assert set(dropped) == set(scores[sample.pair_id]) - set(got)
        assert all(abs(v - scores[sample.pair_id][e]) < 1e-4 and v < threshold for e, v in dropped.items())
        assert sample.meta["scorer_model"] == "tiny@test"
    assert handler.counts == {"i2e": len(kept), "no_entity": len(cands) - len(kept), "dead_letter": len(bad)}
