"""The cached-feature recipe on the real S3: it trains, saves a normal full checkpoint, and serves what it trained."""

from __future__ import annotations

import pytest
import torch

from mofi.i2e import Snapshot, iter_shard
from mofi.images import decode_rgb
from mofi.objstore import ObjectStore
from mofi_platform.training.checkpoint import load_checkpoint
from mofi_platform.training.config import TrainConfig
from mofi_platform.training.feature_cache import FeatureCache, cache_uri, served_features, upper_features
from mofi_platform.training.inference import EmbeddingModel
from mofi_platform.training.models import create_model_and_transforms
from mofi_platform.training.trainer import train

MODEL, K = "mofi-effnet-lite0-minilm", 5


def _config(settings, uri: str, **kw) -> TrainConfig:
    base = dict(
        snapshot=uri,
        run_name="cached",
        model=MODEL,
        recipe="multitask",
        frozen_stages=K,
        cache_views=2,
        image_size=32,
        context_length=16,
        steps=12,
        batch_size=16,
        lr=3e-3,
        tower_lr_scale=1.0,
        warmup_steps=2,
        checkpoint_every=6,
        checkpoint_dir=f"s3://{settings.s3.models_bucket}/mofi",
    )
    return TrainConfig.from_options({**base, **kw})


def _val_images(store: ObjectStore, snapshot: Snapshot, max_pixels: int) -> list:
    """The decoded validation images that have an entity of the class table, in snapshot order."""
    index = snapshot.class_index()
    return [
        decode_rgb(s.image_bytes, max_pixels=max_pixels)
        for shard in snapshot.shards
        for s in iter_shard(store, shard)
        if snapshot.split_of(s.pair_id) == "val" and any(e["id"] in index for e in s.meta["entities"])
    ]


def test_cached_recipe_trains_a_full_checkpoint_that_serves_what_it_trained(i2e_snapshot):
    settings, uri = i2e_snapshot
    store = ObjectStore(settings.s3)
    cfg = _config(settings, uri)
    result = train(cfg, settings.s3)
    assert result.step == 12
    losses = [m["class_loss"] for m in result.metrics]
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3  # the entity head learns on the cache
    assert all(m["contrastive_loss"] > 0 for m in result.metrics)
    assert [m["step"] for m in result.metrics if "val_map" in m] == [6, 12]

    # a normal full checkpoint: every key of a fresh model, frozen stages as pretrained, upper stages trained
    ckpt = load_checkpoint(store, result.checkpoint)
    assert ckpt["config"]["frozen_stages"] == K and ckpt["image_size"] == 32
    fresh, _, _ = create_model_and_transforms(
        MODEL, pretrained_towers=True, num_classes=len(ckpt["classes"]), image_size=32
    )
    reference = fresh.state_dict()
    assert set(ckpt["model"]) == set(reference)
    lower = "visual.trunk.blocks.4.0.conv_pw.weight"
    upper = "visual.trunk.blocks.6.0.conv_pw.weight"
    assert torch.equal(ckpt["model"][lower], reference[lower])
    assert torch.equal(ckpt["model"]["text.transformer.embeddings.word_embeddings.weight"],
                       reference["text.transformer.embeddings.word_embeddings.weight"])  # fmt: skip
    assert not torch.equal(ckpt["model"][upper], reference[upper])

    # what is served (the full model on pixels) equals the cache path (trained upper part on cached features)
    served = EmbeddingModel.from_checkpoint(ckpt)
    snapshot = Snapshot.load(store, uri)
    cache = FeatureCache.from_bytes(store.get_bytes(cache_uri(cfg, snapshot)))
    images = _val_images(store, snapshot, cfg.max_pixels)
    assert len(images) == len(cache.val_classes) >= 2
    with torch.inference_mode():
        via_cache = torch.nn.functional.normalize(
            upper_features(served.model, K, cache.val_features.float()), dim=-1
        ).numpy()
    direct = served.embed_images(images)
    assert abs(direct - via_cache).max() < 1e-2
    assert (direct * via_cache).sum(axis=1).min() > 0.999

    # a second run on the same snapshot and split point reuses the stored cache
    listed = sorted(store.list(cache_uri(cfg, snapshot).rsplit("/", 1)[0] + "/"))
    again = train(_config(settings, uri, run_name="cached-seed1", seed=1, steps=2), settings.s3)
    assert again.step == 2 and sorted(store.list(listed[0].rsplit("/", 1)[0] + "/")) == listed


def test_cached_recipe_rejects_a_tower_it_cannot_split(i2e_snapshot):
    settings, uri = i2e_snapshot
    with pytest.raises(ValueError, match="EfficientNet"):
        train(_config(settings, uri, model="mofi-tiny-vit", pretrained_towers=False), settings.s3)
    with pytest.raises(ValueError, match="frozen_stages must be 1..7"):
        train(_config(settings, uri, frozen_stages=9), settings.s3)


def test_top_classes_trains_on_the_most_frequent_entities_only(i2e_snapshot):
    settings, uri = i2e_snapshot
    store = ObjectStore(settings.s3)
    snapshot = Snapshot.load(store, uri)
    top = snapshot.most_frequent(0.5)
    assert len(top.classes) == -(-len(snapshot.classes) // 2) and top.classes == snapshot.classes[: len(top.classes)]
    assert min(c.count for c in top.classes) >= max(c.count for c in snapshot.classes[len(top.classes) :])
    cfg = _config(settings, uri, run_name="top-half", top_classes=0.5, steps=2, checkpoint_every=2)
    result = train(cfg, settings.s3)
    ckpt = load_checkpoint(store, result.checkpoint)
    assert [c["id"] for c in ckpt["classes"]] == [c.id for c in top.classes]
    assert ckpt["model"]["entity_head.weight"].shape[0] == len(top.classes)
    cache = FeatureCache.from_bytes(store.get_bytes(cache_uri(cfg, top)))
    assert all(cs and max(cs) < len(top.classes) for cs in cache.classes)  # images without a kept class left out
    index, full_index = top.class_index(), snapshot.class_index()
    train_samples = [
        s for shard in snapshot.shards for s in iter_shard(store, shard) if snapshot.split_of(s.pair_id) == "train"
    ]
    with_top = sum(any(e["id"] in index for e in s.meta["entities"]) for s in train_samples)
    with_any = sum(any(e["id"] in full_index for e in s.meta["entities"]) for s in train_samples)
    assert len(cache.classes) == with_top < with_any
    with pytest.raises(ValueError, match="top_classes must be in"):
        train(_config(settings, uri, top_classes=0.0), settings.s3)


def test_held_out_classes_stay_out_of_training_and_measure_unseen_entities(i2e_snapshot):
    settings, uri = i2e_snapshot
    store = ObjectStore(settings.s3)
    snapshot = Snapshot.load(store, uri)
    kept, held = snapshot.hold_out(50)
    assert {c.id for c in kept.classes} | {c.id for c in held.classes} == {c.id for c in snapshot.classes}
    assert [c.index for c in kept.classes] == list(range(len(kept.classes))) and held.classes
    assert snapshot.hold_out(50)[1] == held  # the same entities every time
    cfg = _config(settings, uri, run_name="held-out", holdout_classes=50, steps=2, checkpoint_every=2)
    result = train(cfg, settings.s3)
    ckpt = load_checkpoint(store, result.checkpoint)
    assert [c["id"] for c in ckpt["classes"]] == [c.id for c in kept.classes]
    cache = FeatureCache.from_bytes(store.get_bytes(cache_uri(cfg, kept, held)))
    only_held = [
        s
        for shard in snapshot.shards
        for s in iter_shard(store, shard)
        if any(e["id"] in held.class_index() for e in s.meta["entities"])
        and not any(e["id"] in kept.class_index() for e in s.meta["entities"])
    ]
    assert len(cache.unseen_classes) == len(only_held) == cache.unseen_features.shape[0] >= 2
    assert "val_unseen_map" in result.metrics[-1] and 0 < result.metrics[-1]["val_unseen_map"] <= 1
    with pytest.raises(ValueError, match="holdout_classes must be a percent"):
        train(_config(settings, uri, holdout_classes=100), settings.s3)


def test_pooled_projection_serves_pooled_features_beside_the_projection(i2e_snapshot):
    settings, uri = i2e_snapshot
    store = ObjectStore(settings.s3)
    cfg = _config(settings, uri, run_name="pooled-projection", embedding="pooled_projection", steps=2)
    result = train(cfg, settings.s3)
    assert "val_map" in result.metrics[-1]
    served = EmbeddingModel.load(result.checkpoint, settings.s3)
    pooled_dim = served.model.visual.trunk.num_features
    assert served.embedding == "pooled_projection" and served.dim == pooled_dim + 256

    snapshot = Snapshot.load(store, uri)
    cache = FeatureCache.from_bytes(store.get_bytes(cache_uri(cfg, snapshot)))
    images = _val_images(store, snapshot, cfg.max_pixels)
    direct = served.embed_images(images)
    with torch.inference_mode():
        via_cache = served_features(served.model, K, cache.val_features.float(), "pooled_projection").numpy()
    assert (direct * via_cache).sum(axis=1).min() > 0.999  # what is served is what validation measured
    assert abs(torch.linalg.norm(torch.from_numpy(direct), dim=1) - 1).max() < 1e-5

    # texts are zero on the pooled part: text-image cosine is the projection's / sqrt(2), so rankings are the same
    texts = served.embed_texts(["rocket launch", "a cat"])
    assert (
        abs(texts[:, :pooled_dim]).max() == 0
        and abs(torch.linalg.norm(torch.from_numpy(texts), dim=1) - 1).max() < 1e-5
    )
    projection = EmbeddingModel(served.model, served.eval_transform, served.tokenizer, "p", MODEL)
    expected = projection.embed_images(images) @ projection.embed_texts(["rocket launch", "a cat"]).T
    assert abs(direct @ texts.T - expected * 0.5**0.5).max() < 1e-4

    with pytest.raises(ValueError, match="unknown embedding"):
        train(_config(settings, uri, embedding="concat"), settings.s3)
    with pytest.raises(ValueError, match="pooled_projection needs a trunk"):
        train(_config(settings, uri, model="mofi-tiny-vit", pretrained_towers=False, frozen_stages=0,
                      embedding="pooled_projection"), settings.s3)  # fmt: skip
