"""Streaming I2E shards per rank and worker, targets, texts."""

from __future__ import annotations

from collections import Counter

from torch.utils.data import DataLoader

from mofi.i2e import Snapshot
from mofi_platform import training
from mofi_platform.training.data import Collate, I2EStream, StreamConfig, entity_text, make_loader


def _pairs(stream: I2EStream, n: int) -> list[str]:
    it = iter(stream)
    return [next(it)["pair_id"] for _ in range(n)]


def test_ranks_split_one_epoch_without_overlap(i2e_snapshot, store):
    settings, uri = i2e_snapshot
    snap = Snapshot.load(store, uri)
    _, _, eval_t = training.create_model_and_transforms("mofi-tiny-vit")
    train_ids = {f"p{s:02d}{i:04d}" for s in range(3) for i in range(32)}
    train_ids = {p for p in train_ids if snap.split_of(p) == "train"}
    cfg = StreamConfig(shuffle_buffer=4, require_class=True)
    seen = []
    for rank in range(2):
        ds = I2EStream(settings.s3, snap, eval_t, cfg, rank=rank, world_size=2)
        seen.append(_pairs(ds, 20))
    assert not set(seen[0]) & set(seen[1])  # 3 shards >= 2 ranks: whole shards dealt round-robin
    assert set(seen[0]) | set(seen[1]) <= train_ids
    # with DataLoader workers (2 ranks x 2 workers = 4 slots > 3 shards): sample-level split, still disjoint
    per_rank = []
    for rank in range(2):
        ds = I2EStream(settings.s3, snap, eval_t, cfg, rank=rank, world_size=2)
        loader = DataLoader(ds, batch_size=None, num_workers=2)
        it = iter(loader)
        per_rank.append([next(it)["pair_id"] for _ in range(len(train_ids) // 2 - 4)])
    assert not set(per_rank[0]) & set(per_rank[1])
    assert max(Counter(per_rank[0]).values()) == 1


def test_batches_carry_multi_hot_targets_and_entity_text(i2e_snapshot, store):
    settings, uri = i2e_snapshot
    snap = Snapshot.load(store, uri)
    index = snap.class_index()
    assert {"wn:circle", "wn:red", "wn:blue"} <= set(index)
    _, train_t, _ = training.create_model_and_transforms("mofi-tiny-vit")
    ds = I2EStream(settings.s3, snap, train_t, StreamConfig(shuffle_buffer=8))
    tok = training.get_tokenizer("mofi-tiny-vit")
    batch = next(iter(make_loader(ds, 6, Collate(len(snap.classes), tok))))
    assert batch["images"].shape == (6, 3, 32, 32)
    assert batch["targets"].shape == (6, len(snap.classes)) and batch["texts"].shape == (6, 32)
    assert (batch["targets"].sum(1) >= 1).all() and (batch["targets"].sum(1) >= 2).any()
    texts = [entity_text(c.name, c.description) for c in snap.classes]
    sample = next(iter(ds))
    assert sample["text"] in texts and "circle: ellipse" in " ".join(texts)
    names = next(iter(I2EStream(settings.s3, snap, train_t, StreamConfig(shuffle_buffer=8, entity_text="name"))))
    assert names["text"] in {c.name for c in snap.classes}
    alt = next(iter(I2EStream(settings.s3, snap, train_t, StreamConfig(text_source="alt_text", require_class=False))))
    assert alt["text"].startswith("a ") and "background" in alt["text"]


def test_undecodable_images_are_skipped_not_fatal(settings, store, caplog):
    from mofi.i2e import I2ESample, create_snapshot, snapshot_uri, write_shard
    from tests.training.conftest import make_samples

    good = make_samples(4, seed=7)
    bad = I2ESample(pair_id="broken01", image_bytes=b"not an image", ext="png", meta=dict(good[0].meta))
    prefix = f"s3://{settings.s3.i2e_bucket}/shards"
    write_shard(store, f"{prefix}/s.tar", [bad, *good])
    uri = snapshot_uri(settings.s3.i2e_bucket, "v-bad")
    snap = create_snapshot(store, prefix + "/", uri, min_count=1, val_percent=0)
    _, _, eval_t = training.create_model_and_transforms("mofi-tiny-vit")
    ds = I2EStream(settings.s3, snap, eval_t, StreamConfig(shuffle_buffer=2))
    ids = _pairs(ds, 8)
    assert "broken01" not in ids and set(ids) == {s.pair_id for s in good}
    assert "skipping pair broken01" in caplog.text
