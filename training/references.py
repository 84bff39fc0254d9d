"""What a retrieval mAP is read against: the frozen baseline, chance, and seen vs unseen classes.

Why one home: ``mofi eval``, the pipeline's evaluate step (its Metrics and quality gate), the demo
summary and the report print these numbers beside every mAP; a model's mAP alone says nothing about
whether training helped. :func:`evaluate_with_references` adds them to a model's results:

- ``baseline``: the frozen ImageNet EfficientNet-Lite0 features (:mod:`.baselines`) at the *model's*
  input size (frozen features lose mAP at small sizes, so comparing against 224 px would flatter the
  baseline, and a smaller size would flatter the model). The baseline's benchmark embeddings are cached
  in the object store per (benchmark content, input size): ``<cache>/<benchmark digest>/<name>-<size>px.npy``,
  so a pipeline run or a rerun of ``mofi eval`` embeds the benchmark with the baseline once per size.
- ``chance``: the mAP of random embeddings (i.i.d. Gaussian, so every ranking is equally likely) on the
  benchmark's labels, the mean of :data:`CHANCE_DRAWS` seeded draws. It depends on the class sizes
  only, so it is computed, not assumed.
- seen / unseen: a benchmark class is *seen* when its KB entity is one of the model's training
  classes (the snapshot's class table, which the checkpoint carries), compared by canonical id when a
  knowledge base gives one; a benchmark without entity ids falls back to comparing names. mAP is
  reported over the queries of each side (``map_seen``, ``map_unseen``), for the model and the baseline.
"""

from __future__ import annotations

import dataclasses
import io
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from mofi.objstore import ObjectStore, join_uri
from mofi_platform.training.evaluation import (
    Benchmark,
    average_precisions,
    embed_benchmark,
    evaluate_embeddings,
    evaluate_model,
)
from mofi_platform.training.losses import LossConfig, cosface_chance_loss

__all__ = [
    "BASELINE",
    "CHANCE_DRAWS",
    "chance_map",
    "seen_classes",
    "baseline_embeddings",
    "class_loss_chance",
    "evaluate_with_references",
]

log = logging.getLogger(__name__)

#: The frozen baseline's name (``mofi eval --baseline``).
BASELINE = "imagenet-effnet-lite0"
CHANCE_DRAWS = 5


def chance_map(bench: Benchmark, draws: int = CHANCE_DRAWS, seed: int = 0, dim: int = 64) -> dict[str, Any]:
    """mAP of random embeddings on ``bench``: mean and standard deviation over ``draws`` seeded draws."""
    rng = np.random.default_rng(seed)
    n = len(bench.images)
    maps = [float(average_precisions(rng.normal(size=(n, dim)), bench.labels).mean()) for _ in range(draws)]
    return {"map": float(np.mean(maps)), "std": float(np.std(maps)), "draws": draws, "seed": seed}


def seen_classes(
    bench: Benchmark, classes: Sequence[Mapping[str, Any]], canonical: Callable[[str], str] | None = None
) -> tuple[dict[str, bool], str]:
    """Benchmark class -> whether it is a training class, and how they were matched ("entity id" or "name").

    ``classes`` is a checkpoint's class table (``{"id", "name", ...}`` rows); ``canonical`` maps a KB
    entity id to its canonical id (``KnowledgeBase.canonical``).
    """
    to_id = canonical or (lambda eid: eid)
    if bench.class_entity:
        ids = {to_id(str(c["id"])) for c in classes}
        return {cls: to_id(bench.class_entity.get(cls, "")) in ids for cls in bench.class_names}, "entity id"
    names = {str(c["name"]).casefold() for c in classes}
    return {cls: name.casefold() in names for cls, name in bench.class_names.items()}, "name"


def _npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def baseline_embeddings(bench: Benchmark, image_size: int, store: ObjectStore, cache: str) -> np.ndarray:
    """The frozen baseline's embeddings of ``bench`` at ``image_size``, from the cache under ``cache`` if there."""
    uri = join_uri(cache, bench.digest, f"{BASELINE}-{image_size}px.npy")
    if store.exists(uri):
        emb = np.load(io.BytesIO(store.get_bytes(uri)), allow_pickle=False)
        if emb.shape[0] == len(bench.images):
            log.info("baseline embeddings of %s at %d px from %s", bench.root, image_size, uri)
            return emb
    from mofi_platform.training.baselines import imagenet_effnet_lite0_embedder

    emb = embed_benchmark(bench, imagenet_effnet_lite0_embedder(image_size))
    store.put_bytes(uri, _npy(emb))
    return emb


def class_loss_chance(ckpt: Mapping[str, Any]) -> dict[str, Any] | None:
    """The chance level of the checkpoint's training class loss (None when it trained no classes).

    From its config (CosFace s, m, lambda) and class table: :func:`~.losses.cosface_chance_loss` for
    one positive per image (images with more positives have a slightly lower one).
    """
    config = dict(ckpt.get("config") or {})
    classes = ckpt.get("classes") or []
    names = {f.name for f in dataclasses.fields(LossConfig)}
    loss = LossConfig(**{k: v for k, v in config.items() if k in names}) if "recipe" in config else None
    if loss is None or not loss.uses_classes or not classes:
        return None
    value = cosface_chance_loss(len(classes), loss.cosface_scale, loss.cosface_margin)
    return {"value": value, "num_classes": len(classes), "scale": loss.cosface_scale, "margin": loss.cosface_margin}


def evaluate_with_references(
    bench: Benchmark,
    ckpt: Mapping[str, Any],
    store: ObjectStore,
    cache: str,
    canonical: Callable[[str], str] | None = None,
) -> dict[str, Any]:
    """A checkpoint's results (``evaluate_model``'s) with ``baseline``, ``chance``, the split, class-loss chance.

    The split (``map_seen``/``map_unseen`` and the classes on each side) needs the checkpoint's class
    table; one without reports every class as unseen.
    """
    from mofi_platform.training.inference import EmbeddingModel

    model = EmbeddingModel.from_checkpoint(dict(ckpt))
    seen, matched_by = seen_classes(bench, model.classes, canonical)
    results = {**evaluate_model(bench, model, seen), "seen_matched_by": matched_by}
    base = evaluate_embeddings(bench, baseline_embeddings(bench, model.image_size, store, cache), seen=seen)
    results["baseline"] = {
        "model": BASELINE,
        "image_size": model.image_size,
        **{k: base[k] for k in ("map", "map_per_domain", "map_seen", "map_unseen", "linear_probe_top1")},
    }
    results["chance"] = chance_map(bench)
    results["class_loss_chance"] = class_loss_chance(ckpt)
    return results
