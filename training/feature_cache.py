"""Cached-feature training: the upper image-trunk stages learn for many epochs on features of the frozen lower ones.

Why: on two CPU cores a fine-tune from pixels sees each image of a demo snapshot about once in the
demo's budget; the entity head then stays at chance (class loss ~ ln C + s*m) and the model ends up
worse than the frozen ImageNet tower it started from. The lower stages of a pretrained CNN compute
generic features that fine-tuning barely changes, and they are most of the cost. So with
``frozen_stages = k`` they run once per image, for ``cache_views`` views (the plain evaluation view
and augmented training views, so training still sees augmentation), and the trainer runs many
epochs of trunk stages k.., conv head, projection and entity head on those features. The text tower
is frozen too: its pooled output for every text is cached and only the text projection trains.

The cache is one object in the object store, keyed by everything its contents depend on (snapshot
URI and shard hashes, class table, model, split point, input size, views, text source), so later
runs on the same snapshot (other seeds, learning rates, recipes with the same texts) reuse it.
What trains is still the whole model: the frozen stages keep their pretrained weights, the saved
checkpoint is a normal full checkpoint, and serving runs the full tower on pixels. The plain view's
cached features are exactly what the served model's lower stages compute (the tests check it), so
caching does not change what is served. ``frozen_stages = 0`` is the fine-tune from pixels (the GPU
recipe); both go through the same trainer loop.

Model selection uses the snapshot's validation split: its images (plain view) are cached as well,
and at every checkpoint the trainer logs ``val_map``, retrieval mAP over the validation images
where two images are relevant to each other when they share an entity class (every image queries
all, itself included, as in ``mofi_platform.training.evaluation``). The same number for the frozen
tower's own pooled features is logged once, before training, as the reference.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import random
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from open_clip.transform import PreprocessCfg, image_transform_v2
from PIL import Image
from torch import nn
from tqdm import tqdm

from mofi.i2e import Snapshot, iter_shard
from mofi.images import ImageRejected, decode_rgb
from mofi.objstore import ObjectStore, join_uri
from mofi_platform.training.data import StreamConfig, sample_labels
from mofi_platform.training.embedding import join
from mofi_platform.training.models import get_tokenizer

if TYPE_CHECKING:
    from mofi_platform.training.config import TrainConfig

__all__ = [
    "FeatureCache",
    "CachedFeatureModule",
    "CachedBatches",
    "freeze_lower",
    "lower_features",
    "upper_features",
    "pooled_text",
    "cache_uri",
    "build_cache",
    "load_or_build",
    "served_features",
    "validation_map",
    "prepare",
]

log = logging.getLogger(__name__)

#: Bumped when what a cache holds changes, so old caches are not read as new ones.
FORMAT = 1
#: Images per forward pass of the lower stages while caching.
CHUNK = 64


def _trunk(model: nn.Module) -> nn.Module:
    trunk = getattr(model.visual, "trunk", None)
    if trunk is None or not all(hasattr(trunk, a) for a in ("conv_stem", "bn1", "blocks", "conv_head", "bn2")):
        raise ValueError(f"frozen_stages needs an EfficientNet image tower; {type(model.visual).__name__} is not one")
    return trunk


def _text(model: nn.Module) -> nn.Module:
    text = getattr(model, "text", None)
    if text is None or not all(hasattr(text, a) for a in ("transformer", "pooler", "proj")):
        raise ValueError("frozen_stages with a text loss needs a Hugging Face text tower (transformer, pooler, proj)")
    return text


def _check_split(model: nn.Module, k: int) -> None:
    stages = len(_trunk(model).blocks)
    if not 1 <= k <= stages:
        raise ValueError(f"frozen_stages must be 1..{stages} for this tower (0 trains from pixels), got {k}")


def freeze_lower(model: nn.Module, k: int, text: bool) -> None:
    """No gradients for the stem and the first ``k`` trunk stages, nor (``text``) the text transformer."""
    _check_split(model, k)
    trunk = _trunk(model)
    frozen = [trunk.conv_stem, trunk.bn1, trunk.blocks[:k]] + ([_text(model).transformer] if text else [])
    for module in frozen:
        for p in module.parameters():
            p.requires_grad = False


def lower_features(model: nn.Module, k: int, images: torch.Tensor) -> torch.Tensor:
    """The output of the stem and the first ``k`` stages (what the cache holds)."""
    trunk = _trunk(model)
    return trunk.blocks[:k](trunk.bn1(trunk.conv_stem(images)))


def upper_features(model: nn.Module, k: int, features: torch.Tensor, project: bool = True) -> torch.Tensor:
    """The rest of the image tower on ``lower_features``: the unnormalised embedding (or, without
    ``project``, the pooled trunk features the frozen baseline uses)."""
    trunk = _trunk(model)
    pooled = trunk.forward_head(trunk.bn2(trunk.conv_head(trunk.blocks[k:](features))))
    return model.visual.head(pooled) if project else pooled


def pooled_text(model: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """The text tower up to its projection (what the cache holds for each text)."""
    text = _text(model)
    mask = (tokens != text.config.pad_token_id).long()
    return text.pooler(text.transformer(input_ids=tokens, attention_mask=mask), mask)


class CachedFeatureModule(nn.Module):
    """The trainer's module on cached inputs: the model's outputs (and entity cosines) from lower-stage
    features and pooled text features instead of pixels and tokens."""

    def __init__(self, model: nn.Module, k: int):
        super().__init__()
        self.model = model
        self.k = k

    def forward(self, features: torch.Tensor, text_features: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        m = self.model
        image = F.normalize(upper_features(m, self.k, features), dim=-1)
        out = {
            "image_features": image,
            "text_features": None if text_features is None else F.normalize(m.text.proj(text_features), dim=-1),
            "logit_scale": m.logit_scale.exp(),
        }
        head = getattr(m, "entity_head", None)
        if head is not None:
            out["class_cos"] = head(image)
        return out


@dataclass
class FeatureCache:
    """Lower-stage features of a snapshot: training images (all views) and validation images (plain view)."""

    features: torch.Tensor  # (N, V, C, H, W) float16; view 0 is the plain evaluation view
    classes: list[list[int]]  # class indices per training image
    texts: list[list[int]]  # rows of text_features each training image may pick from
    text_features: torch.Tensor  # (T, D) float32 pooled text tower outputs; (0, 0) without texts
    val_features: torch.Tensor  # (M, C, H, W) float16
    val_classes: list[list[int]]
    key: dict[str, Any]
    #: images of held-out entities (``holdout_classes``), plain view, and their held-out class indices
    unseen_features: torch.Tensor = field(default_factory=lambda: torch.zeros(0))
    unseen_classes: list[list[int]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.classes)

    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        torch.save(asdict(self), buf)
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> FeatureCache:
        return cls(**torch.load(io.BytesIO(data), map_location="cpu", weights_only=True))


def _key(cfg: TrainConfig, snapshot: Snapshot, unseen: Snapshot | None = None) -> dict[str, Any]:
    return {
        **({"unseen": [c.id for c in unseen.classes]} if unseen is not None else {}),
        "format": FORMAT,
        "snapshot": cfg.snapshot,
        "shards": snapshot.shard_sha256 or snapshot.shards,
        "classes": [c.id for c in snapshot.classes],
        "same_as": snapshot.same_as,
        "val_percent": snapshot.val_percent,
        "model": cfg.model,
        "pretrained_towers": cfg.pretrained_towers,
        "frozen_stages": cfg.frozen_stages,
        "image_size": cfg.image_size,
        "views": cfg.cache_views,
        "text_source": cfg.loss.spec.text_source,
        "entity_text": cfg.loss.entity_text,
        "require_class": cfg.loss.uses_classes,
        "context_length": cfg.context_length,
        "max_pixels": cfg.max_pixels,
    }


def cache_uri(cfg: TrainConfig, snapshot: Snapshot, unseen: Snapshot | None = None) -> str:
    """Where the cache of this config's snapshot (and held-out classes), model, split point, size and views lives."""
    digest = hashlib.sha256(json.dumps(_key(cfg, snapshot, unseen), sort_keys=True).encode()).hexdigest()[:16]
    folder = cfg.feature_cache or join_uri(cfg.checkpoint_dir, "feature-cache")
    size = f"{cfg.image_size}px" if cfg.image_size else "native"
    return join_uri(folder, f"{snapshot.version}-{cfg.model}-k{cfg.frozen_stages}-{size}-{digest}.pt")


def build_cache(
    cfg: TrainConfig,
    store: ObjectStore,
    snapshot: Snapshot,
    model: nn.Module,
    train_transform: Callable[[Any], torch.Tensor],
    unseen: Snapshot | None = None,
) -> FeatureCache:
    """Run the frozen part over the snapshot once (progress bar per image); deterministic views.

    With ``unseen`` (the held-out classes), an image naming one of them and no training class goes to
    the unseen set instead of training."""
    k = cfg.frozen_stages
    _check_split(model, k)
    eval_transform = image_transform_v2(PreprocessCfg(**model.visual.preprocess_cfg), is_train=False)
    stream = StreamConfig(
        text_source=cfg.loss.spec.text_source, entity_text=cfg.loss.entity_text, require_class=cfg.loss.uses_classes
    )
    class_index = snapshot.class_index()
    unseen_index = unseen.class_index() if unseen is not None else {}
    text_rows: dict[str, int] = {}
    train_views: list[torch.Tensor] = []
    val_views: list[torch.Tensor] = []
    unseen_views: list[torch.Tensor] = []
    train: dict[str, list[Any]] = {"features": [], "classes": [], "texts": []}
    val: dict[str, list[Any]] = {"features": [], "classes": []}
    held: dict[str, list[Any]] = {"features": [], "classes": []}

    device = next(model.parameters()).device

    def flush(views: list[torch.Tensor], out: list[torch.Tensor], force: bool = False) -> None:
        if views and (force or len(views) >= CHUNK):
            out.append(lower_features(model, k, torch.stack(views).to(device)).to("cpu", torch.float16))
            views.clear()

    was_training = model.training
    model.eval()
    py_state = random.getstate()
    random.seed(cfg.seed)  # open_clip's colour jitter draws from `random`, the crops from torch
    try:
        with (
            torch.inference_mode(),
            torch.random.fork_rng(),
            tqdm(total=snapshot.num_samples, desc=f"feature cache k={k}", unit="img") as progress,
        ):
            torch.manual_seed(cfg.seed)
            for uri in snapshot.shards:
                for sample in iter_shard(store, uri):
                    progress.update(1)
                    ids = [e["id"] for e in sample.meta.get("entities", [])]
                    unseen_classes = sorted({unseen_index[i] for i in ids if i in unseen_index})
                    if unseen_classes and not any(i in class_index for i in ids):
                        image = _decode(sample, cfg.max_pixels)
                        if image is not None:
                            held["classes"].append(unseen_classes)
                            unseen_views.append(eval_transform(image))
                            flush(unseen_views, held["features"])
                        continue
                    labels = sample_labels(sample, class_index, stream)
                    split = snapshot.split_of(sample.pair_id)
                    if labels is None or (split == "val" and not labels[0]):
                        continue
                    image = _decode(sample, cfg.max_pixels)
                    if image is None:
                        continue
                    classes, texts = labels
                    if split == "val":
                        val["classes"].append(classes)
                        val_views.append(eval_transform(image))
                        flush(val_views, val["features"])
                        continue
                    train["classes"].append(classes)
                    train["texts"].append([text_rows.setdefault(t, len(text_rows)) for t in texts])
                    train_views.append(eval_transform(image))
                    train_views += [train_transform(image) for _ in range(cfg.cache_views - 1)]
                    flush(train_views, train["features"])
            flush(train_views, train["features"], force=True)
            flush(val_views, val["features"], force=True)
            flush(unseen_views, held["features"], force=True)
            if not train["classes"]:
                raise ValueError(f"snapshot {cfg.snapshot} has no usable training images for {cfg.loss.recipe}")
            text_features = torch.zeros(0, 0)
            if text_rows:
                tokenizer = get_tokenizer(cfg.model, cfg.context_length or None)
                names = list(text_rows)
                text_features = torch.cat(
                    [
                        pooled_text(model, tokenizer(names[i : i + CHUNK]).to(device)).cpu()
                        for i in range(0, len(names), CHUNK)
                    ]
                ).float()
    finally:
        random.setstate(py_state)
        model.train(was_training)
    features = torch.cat(train["features"])
    n = len(train["classes"])
    empty = torch.zeros(0, *features.shape[1:], dtype=torch.float16)
    return FeatureCache(
        features=features.reshape(n, cfg.cache_views, *features.shape[1:]).clone(),
        classes=train["classes"],
        texts=train["texts"],
        text_features=text_features.clone(),
        val_features=torch.cat(val["features"]).clone() if val["features"] else empty,
        val_classes=val["classes"],
        key=_key(cfg, snapshot, unseen),
        unseen_features=torch.cat(held["features"]).clone() if held["features"] else empty,
        unseen_classes=held["classes"],
    )


def _decode(sample: Any, max_pixels: int) -> Image.Image | None:
    try:
        return decode_rgb(sample.image_bytes, max_pixels=max_pixels)
    except ImageRejected as e:
        log.warning("skipping pair %s: %s", sample.pair_id, e)
        return None


def load_or_build(
    cfg: TrainConfig,
    store: ObjectStore,
    snapshot: Snapshot,
    model: nn.Module,
    train_transform: Callable[[Any], torch.Tensor],
    rank: int = 0,
    world: int = 1,
    unseen: Snapshot | None = None,
) -> FeatureCache:
    """The stored cache of this config, built and stored first (by rank 0) when there is none."""
    uri = cache_uri(cfg, snapshot, unseen)
    cache = None
    if rank == 0 and not store.exists(uri):
        cache = build_cache(cfg, store, snapshot, model, train_transform, unseen)
        store.put_bytes(uri, cache.to_bytes())
        log.info("feature cache written to %s (%d training images x %d views)", uri, len(cache), cfg.cache_views)
    if world > 1:
        dist.barrier()
    if cache is None:
        cache = FeatureCache.from_bytes(store.get_bytes(uri))
        log.info("feature cache read from %s (%d training images)", uri, len(cache))
    return cache


class CachedBatches:
    """Endless batches of this rank's share of a cache, in the keys the trainer loop reads.

    Every epoch is a new permutation (the same on every rank, which take alternate items of it, so
    ranks always have equally many batches); each item gets one of its views and one of its texts
    at random.
    """

    def __init__(self, cache: FeatureCache, batch_size: int, num_classes: int, uses_text: bool, seed: int,
                 rank: int = 0, world: int = 1):  # fmt: skip
        if len(cache) // world < batch_size:
            raise ValueError(
                f"{len(cache)} cached training images are fewer than batch size {batch_size} x {world} ranks"
            )
        self.cache = cache
        self.batch_size = batch_size
        self.num_classes = num_classes
        self.uses_text = uses_text
        self.seed = seed
        self.rank = rank
        self.world = world

    def __iter__(self) -> Iterator[dict[str, Any]]:
        cache, size = self.cache, self.batch_size
        order_gen = torch.Generator().manual_seed(self.seed)
        pick_gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.rank)
        picks = random.Random(f"{self.seed}/{self.rank}")
        usable = len(cache) // self.world * self.world
        while True:
            order = torch.randperm(len(cache), generator=order_gen)[:usable][self.rank :: self.world]
            for start in range(0, len(order) - size + 1, size):
                idx = order[start : start + size]
                views = torch.randint(cache.features.shape[1], (size,), generator=pick_gen)
                batch: dict[str, Any] = {"images": cache.features[idx, views].float(), "texts": None, "targets": None}
                if self.num_classes:
                    targets = torch.zeros(size, self.num_classes, dtype=torch.bool)
                    for row, i in enumerate(idx.tolist()):
                        targets[row, cache.classes[i]] = True
                    batch["targets"] = targets
                if self.uses_text:
                    rows = [picks.choice(cache.texts[i]) for i in idx.tolist()]
                    batch["texts"] = cache.text_features[rows]
                yield batch


def shared_class_map(embeddings: np.ndarray, classes: list[list[int]]) -> float:
    """Full retrieval mAP where two images are relevant when they share a class (self included)."""
    x = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True).clip(min=1e-12)
    labels = np.zeros((len(classes), 1 + max(c for cs in classes for c in cs)), dtype=np.float32)
    for row, cs in enumerate(classes):
        labels[row, cs] = 1
    order = np.argsort(-(x @ x.T), axis=1, kind="stable")
    relevant = (labels @ labels.T > 0)[np.arange(len(x))[:, None], order]
    hits = np.cumsum(relevant, axis=1)
    precision = np.where(relevant, hits / np.arange(1, len(x) + 1), 0.0)
    return float((precision.sum(axis=1) / relevant.sum(axis=1)).mean())


def served_features(model: nn.Module, k: int, features: torch.Tensor, embedding: str = "projection") -> torch.Tensor:
    """The embedding the model serves (:mod:`~mofi_platform.training.embedding`) from ``lower_features``;
    ``embedding="pooled"``: the pooled trunk features alone (what the frozen baseline uses)."""
    pooled = upper_features(model, k, features, project=False)
    if embedding == "pooled":
        return pooled
    projected = model.visual.head(pooled)
    return projected if embedding == "projection" else join(pooled, projected)


def validation_map(
    model: nn.Module, k: int, cache: FeatureCache, embedding: str = "projection", split: str = "val"
) -> float | None:
    """``shared_class_map`` of the model's ``embedding`` (as :func:`served_features`) of the validation
    images (``split="unseen"``: of the held-out entities' images); None without two of them."""
    features, classes = (
        (cache.val_features, cache.val_classes) if split == "val" else (cache.unseen_features, cache.unseen_classes)
    )
    if len(classes) < 2:
        return None
    was_training = model.training
    device = next(model.parameters()).device
    model.eval()
    try:
        with torch.inference_mode():
            emb = torch.cat(
                [
                    served_features(model, k, features[i : i + CHUNK].to(device).float(), embedding).cpu()
                    for i in range(0, len(classes), CHUNK)
                ]
            )
    finally:
        model.train(was_training)
    return shared_class_map(emb.float().numpy(), classes)


def prepare(
    cfg: TrainConfig,
    store: ObjectStore,
    snapshot: Snapshot,
    model: nn.Module,
    train_transform: Callable[[Any], torch.Tensor],
    num_classes: int,
    start: int,
    rank: int = 0,
    world: int = 1,
    unseen: Snapshot | None = None,
) -> tuple[nn.Module, CachedBatches, Callable[[], dict[str, float]]]:
    """What the trainer loop needs for a cached-feature run: its module, its batches, and the
    validation metrics to log at each checkpoint (rank 0; empty elsewhere or without a split):
    ``val_map`` on the validation split, and with ``unseen`` (held-out classes) ``val_unseen_map``."""
    k = cfg.frozen_stages
    cache = load_or_build(cfg, store, snapshot, model, train_transform, rank, world, unseen)
    batches = CachedBatches(cache, cfg.batch_size, num_classes, cfg.loss.uses_text, cfg.seed + start, rank, world)
    splits = {"val_map": "val", "val_unseen_map": "unseen"}
    if rank == 0 and start == 0:
        for name, split in splits.items():
            frozen = validation_map(model, k, cache, "pooled", split=split)
            if frozen is not None:
                log.info("%s of the frozen tower's pooled features: %.4f", name, frozen)

    def validate() -> dict[str, float]:
        values = {name: validation_map(model, k, cache, cfg.embedding, split=split) for name, split in splits.items()}
        return {name: v for name, v in values.items() if v is not None} if rank == 0 else {}

    return CachedFeatureModule(model, k), batches, validate
