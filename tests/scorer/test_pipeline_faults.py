"""SIGKILL the scorer stage and the writer mid-stream, three times each: every valid pair is in the
shards exactly once (or, if the image shows none of its entities, in the no-entity record)."""

from __future__ import annotations

import io
import threading
import time

import numpy as np
import pytest
from PIL import Image

from mofi.kafka import ensure_topics, make_producer
from mofi_platform.services.scorer.filtering import candidate_texts
from mofi_platform.services.scorer.scoring import ClipScorer
from mofi_platform.training.checkpoint import save_checkpoint
from mofi_platform.training.inference import EmbeddingModel
from tests.writer.support import (
    account,
    bad_candidate_records,
    candidate_pair,
    kill,
    stage_process,
    stop,
    visible_pairs,
)

ROUNDS, BURST = 3, 16


def _wait(cond, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


@pytest.mark.slow
def test_scorer_and_writer_killed_three_times_each(settings, store, tiny_embedding_model, tmp_path):
    ckpt = f"s3://{settings.s3.models_bucket}/clip/tiny.pt"
    save_checkpoint(
        store,
        ckpt,
        {
            "model_name": "mofi-tiny-vit",
            "image_size": None,
            "version": "tiny@test",
            "model": tiny_embedding_model.model.state_dict(),
        },
    )
    scorer = ClipScorer(EmbeddingModel.load(ckpt, settings.s3))
    cands = [candidate_pair(i) for i in range(ROUNDS * BURST + 1)]  # the first one warms the stages up
    best = {
        c.pair.pair_id: max(
            scorer.score_many([(Image.open(io.BytesIO(c.pair.image_bytes)).convert("RGB"), candidate_texts(c))])[0]
        )
        for c in cands
    }
    settings.scorer.checkpoint = ckpt
    settings.scorer.threshold = float(np.median(list(best.values())))
    settings.kafka.max_poll_records = 2
    settings.writer.shard_size = 3
    settings.writer.flush_interval_s = 0.2
    ensure_topics(
        settings.kafka, [settings.kafka.candidates_topic, settings.kafka.i2e_topic, settings.kafka.dead_letter_topic]
    )
    bad = bad_candidate_records()
    prod = make_producer(settings.kafka)

    def burst(chunk):  # slowly, with a replay of each pair's predecessor (an upstream restart)
        for i, c in enumerate(chunk):
            prod.send(settings.kafka.candidates_topic, key=c.pair.pair_id.encode(), value=c.SerializeToString())
            if i:
                prev = chunk[i - 1]
                prod.send(
                    settings.kafka.candidates_topic, key=prev.pair.pair_id.encode(), value=prev.SerializeToString()
                )
            prod.flush()
            time.sleep(0.25)

    logs = {name: tmp_path / f"{name}.log" for name in ("scorer", "writer")}
    procs = {name: stage_process(settings, name, log) for name, log in logs.items()}
    prod.send(settings.kafka.candidates_topic, key=cands[0].pair.pair_id.encode(), value=cands[0].SerializeToString())
    prod.flush()
    produced = [cands[0].pair.pair_id]
    kills = []
    try:
        for r in range(ROUNDS):
            chunk = cands[1 + r * BURST : 1 + (r + 1) * BURST]
            _wait(
                lambda produced=produced: set(visible_pairs(settings, store)) >= set(produced),
                120,
                f"catch-up before round {r}",
            )
            before = len(visible_pairs(settings, store))
            t = threading.Thread(target=burst, args=(chunk,))
            t.start()
            produced += [c.pair.pair_id for c in chunk]
            _wait(lambda before=before: len(visible_pairs(settings, store)) > before, 60, f"progress in round {r}")
            for name in ("scorer", "writer"):
                kill(procs[name])
                kills.append((name, t.is_alive()))
                procs[name] = stage_process(settings, name, logs[name])
                time.sleep(0.3)
            t.join()
        for key, value in bad.items():
            prod.send(settings.kafka.candidates_topic, key=key, value=value)
        prod.flush()
        _wait(lambda: set(visible_pairs(settings, store)) >= set(produced), 120, "the end of the stream")
        for name in ("scorer", "writer"):
            assert stop(procs[name]) == 0, logs[name].read_text()[-2000:]
    finally:
        for p in procs.values():
            if p.poll() is None:
                kill(p)
        prod.close()

    assert kills == [("scorer", True), ("writer", True)] * ROUNDS  # every kill hit a running stream
    acc = account(settings, store)
    kept = {p for p, s in best.items() if s >= settings.scorer.threshold}
    assert sorted(acc.shard_ids) == sorted(kept)  # exactly once: no loss, no duplicate
    assert acc.no_entity == set(best) - kept
    assert set(acc.dead_letters) == {k.decode() for k in bad}
