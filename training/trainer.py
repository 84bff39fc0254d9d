"""The MOFI training loop: one process per rank (plain, or under torchrun/torchx), resumable.

Why step-based: the I2E stream is endless (see ``mofi_platform.training.data``), so every rank runs exactly
``steps`` optimisation steps and DDP collectives always line up. Every ``checkpoint_every`` steps
rank 0 writes model, optimizer, scheduler, step, class table and config to
``<checkpoint_dir>/<run_name>/step-<N>.pt`` plus the loss curve (``metrics.jsonl``). Starting a
run whose directory holds checkpoints resumes from the newest one, so a killed job (pod evicted,
node lost, Ctrl-C) is restarted with the same command. The data stream is reseeded on resume
rather than replayed exactly; at our step counts the difference is an epoch boundary.

A run is three parts: :func:`build` (model, loss, optimiser from the ``TrainConfig``, then the data
once the resume step is known), the run folder's ``Checkpointer``, and :func:`_loop`.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.distributed as dist
from minio.error import S3Error
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from mofi.i2e import Snapshot
from mofi.objstore import ObjectStore
from mofi.settings import S3Settings
from mofi_platform.training import feature_cache
from mofi_platform.training.checkpointer import Checkpointer
from mofi_platform.training.config import TrainConfig
from mofi_platform.training.data import Collate, I2EStream, StreamConfig, make_loader
from mofi_platform.training.embedding import check_embedding
from mofi_platform.training.losses import MofiLoss
from mofi_platform.training.models import create_model_and_transforms, get_tokenizer, model_spec

__all__ = [
    "DEVICES",
    "train_device",
    "TrainResult",
    "MofiTrainModule",
    "Ranks",
    "Parts",
    "build",
    "build_model",
    "build_loader",
    "train",
    "load_snapshot",
]

log = logging.getLogger(__name__)

MAX_LOGIT_SCALE = math.log(100.0)


@dataclass
class TrainResult:
    run_dir: str
    checkpoint: str
    step: int
    resumed_from: int
    metrics: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class Ranks:
    """Where this process trains: its rank, the number of ranks and its device."""

    rank: int
    world: int
    device: torch.device


class MofiTrainModule(nn.Module):
    """What DDP wraps: the model's forward plus the entity head, so every used parameter is in it."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor, texts: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        out = dict(self.model(images, texts))
        head = getattr(self.model, "entity_head", None)
        if head is not None:
            out["class_cos"] = head(out["image_features"])
        return out


#: Parameters that are not tower weights: projections, entity head, logit scale (open_clip names).
HEAD_PREFIXES = ("visual.head.", "visual.proj", "text.proj", "text_projection", "entity_head.", "logit_scale")


def _param_groups(model: nn.Module, weight_decay: float, lr: float, tower_lr_scale: float) -> list[dict[str, Any]]:
    """AdamW groups: towers at ``lr * tower_lr_scale`` (fine-tuning pretrained weights gently keeps
    what ImageNet/MiniLM learnt while the new projections and entity head train at full rate); no
    weight decay on gains, biases, norms and the logit scale (open_clip's convention)."""
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        tower = not name.startswith(HEAD_PREFIXES)
        decay = p.ndim >= 2 and "logit_scale" not in name
        groups.setdefault((tower, decay), []).append(p)
    return [
        {
            "params": params,
            "lr": lr * (tower_lr_scale if tower else 1.0),
            "weight_decay": weight_decay if decay else 0.0,
        }
        for (tower, decay), params in sorted(groups.items())
    ]


def _warmup_cosine(warmup: int, total: int):
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor


def _dist_env() -> tuple[int, int, int]:
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0))


#: What ``TrainConfig.device`` may say.
DEVICES = ("auto", "cuda", "cpu")


def train_device(device: str, local_rank: int) -> torch.device:
    """The device of this rank. ``cuda`` never falls back to the CPU: a job that asked for GPUs and got a
    CPU-only torch build (the CPU image) or no visible GPU fails here, before any data is read."""
    if device not in DEVICES:
        raise ValueError(f"device {device!r}: one of {', '.join(DEVICES)}")
    if device == "cuda" and not torch.cuda.is_available():
        if torch.version.cuda is None:
            raise RuntimeError(
                f"device=cuda but this torch ({torch.__version__}) is a CPU-only build: run GPU jobs in the CUDA "
                "image (Dockerfile TORCH_VARIANT, skaffold profile gpu)"
            )
        raise RuntimeError(
            f"device=cuda but torch {torch.__version__} (CUDA {torch.version.cuda}) sees no GPU on rank {local_rank}: "
            "does the pod request nvidia.com/gpu, and does the node run the NVIDIA device plugin?"
        )
    if device == "cpu" or (device == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    return torch.device(f"cuda:{local_rank}")


def build_model(cfg: TrainConfig, num_classes: int):
    """The model and its training transform; a recipe without texts trains only the image path."""
    model, train_transform, _ = create_model_and_transforms(
        cfg.model, pretrained_towers=cfg.pretrained_towers, num_classes=num_classes, image_size=cfg.image_size or None
    )
    if cfg.loss.temperature is not None:
        with torch.no_grad():
            model.logit_scale.fill_(math.log(1.0 / cfg.loss.temperature))
    model.logit_scale.requires_grad = cfg.loss.learn_temperature
    if not cfg.loss.uses_text:  # supervised: only the image path (tower + entity head) gets gradients
        image_path = {id(p) for p in model.visual.parameters()} | {id(p) for p in model.entity_head.parameters()}
        for p in model.parameters():
            if id(p) not in image_path:
                p.requires_grad = False
    if cfg.frozen_stages:  # cached-feature recipe: lower stages (and text transformer) stay as pretrained
        feature_cache.freeze_lower(model, cfg.frozen_stages, text=cfg.loss.uses_text)
    return model, train_transform


@dataclass
class Parts:
    """What :func:`build` makes of a ``TrainConfig``: the model on its device, loss, optimiser, schedule."""

    model: nn.Module
    transform: Callable[[Any], torch.Tensor]
    loss_fn: MofiLoss
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR

    def stateful(self) -> dict[str, Any]:
        """Checkpoint key -> the part saved and resumed under it."""
        return {"model": self.model, "optimizer": self.optimizer, "scheduler": self.scheduler}


def build(cfg: TrainConfig, num_classes: int, ranks: Ranks) -> Parts:
    """Model (seeded), loss and optimiser with its warmup-cosine schedule."""
    torch.manual_seed(cfg.seed)
    model, train_transform = build_model(cfg, num_classes)
    check_embedding(model, cfg.embedding)
    model.to(ranks.device)
    optimizer = torch.optim.AdamW(_param_groups(model, cfg.weight_decay, cfg.lr, cfg.tower_lr_scale), lr=cfg.lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _warmup_cosine(cfg.warmup_steps, cfg.steps))
    loss_fn = MofiLoss(cfg.loss, rank=ranks.rank, world_size=ranks.world)
    return Parts(model, train_transform, loss_fn, optimizer, scheduler)


def build_loader(
    cfg: TrainConfig, s3: S3Settings, snapshot: Snapshot, parts: Parts, num_classes: int, start: int, ranks: Ranks
) -> DataLoader:
    """This rank's share of the training stream, reseeded by the step it starts from."""
    stream = I2EStream(
        s3,
        snapshot,
        parts.transform,
        StreamConfig(
            split="train",
            text_source=cfg.loss.spec.text_source,
            entity_text=cfg.loss.entity_text,
            require_class=cfg.loss.uses_classes,
            shuffle_buffer=cfg.shuffle_buffer,
            seed=cfg.seed + start,
            max_pixels=cfg.max_pixels,
        ),
        rank=ranks.rank,
        world_size=ranks.world,
    )
    tokenizer = get_tokenizer(cfg.model, cfg.context_length or None) if cfg.loss.uses_text else None
    return make_loader(stream, cfg.batch_size, Collate(num_classes, tokenizer), cfg.num_workers)


def train(cfg: TrainConfig, s3: S3Settings) -> TrainResult:
    """Run (or resume, or confirm finished) one training run; returns where its checkpoint is."""
    rank, world, local_rank = _dist_env()
    device = train_device(cfg.device, local_rank)
    cuda = device.type == "cuda"
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    try:
        return _train(cfg, s3, Ranks(rank, world, device))
    finally:
        if world > 1 and dist.is_initialized():
            dist.destroy_process_group()


def load_snapshot(store: ObjectStore, uri: str) -> Snapshot:
    """The snapshot at ``uri``; a missing or malformed one is a ``ValueError`` naming it."""
    if not uri:
        raise ValueError("no snapshot given (--snapshot s3://<i2e_bucket>/snapshots/<version>/manifest.json)")
    try:
        return Snapshot.load(store, uri)
    except (OSError, S3Error, KeyError, TypeError, ValueError) as e:
        raise ValueError(f"cannot read snapshot {uri}: {e}") from e


def _check(cfg: TrainConfig) -> None:
    model_spec(cfg.model)  # raises ValueError naming the registered models
    if not cfg.run_name or "/" in cfg.run_name:
        raise ValueError(f"run name {cfg.run_name!r} must be a non-empty name without '/'")
    if not 0 <= cfg.holdout_classes < 100:
        raise ValueError(f"holdout_classes must be a percent in [0, 100), got {cfg.holdout_classes}")
    if not 0 < cfg.top_classes <= 1:
        raise ValueError(f"top_classes must be in (0, 1], got {cfg.top_classes}")
    for name in ("steps", "batch_size", "checkpoint_every", "cache_views"):
        if getattr(cfg, name) < 1:
            raise ValueError(f"{name} must be >= 1, got {getattr(cfg, name)}")
    if cfg.loss.temperature is not None and math.log(1.0 / cfg.loss.temperature) > MAX_LOGIT_SCALE:
        floor = math.exp(-MAX_LOGIT_SCALE)
        raise ValueError(f"temperature {cfg.loss.temperature} is below {floor:g}, the logit scale's clamp")
    if cfg.frozen_stages < 0:
        raise ValueError(f"frozen_stages must be >= 0, got {cfg.frozen_stages}")


def _train(cfg: TrainConfig, s3: S3Settings, ranks: Ranks) -> TrainResult:
    _check(cfg)
    store = ObjectStore(s3)
    snapshot = load_snapshot(store, cfg.snapshot)
    unseen = None
    if cfg.holdout_classes > 0:
        snapshot, unseen = snapshot.hold_out(cfg.holdout_classes)
    if cfg.top_classes < 1:
        snapshot = snapshot.most_frequent(cfg.top_classes)
    num_classes = len(snapshot.classes) if cfg.loss.uses_classes else 0
    if cfg.loss.uses_classes and num_classes == 0:
        raise ValueError(f"snapshot {cfg.snapshot} has no entity classes; recipe {cfg.loss.recipe} needs them")
    parts = build(cfg, num_classes, ranks)
    checkpointer = Checkpointer(store, cfg.run_dir, cfg.keep_checkpoints, ranks.rank, ranks.world)
    start, found, metrics = checkpointer.resume(parts.stateful(), cfg.options())
    if found and ranks.rank == 0:
        log.info("resuming %s from step %d (%s)", cfg.run_dir, start, found)
    if start >= cfg.steps:
        return TrainResult(cfg.run_dir, found, start, start, metrics)
    classes = [asdict(c) for c in snapshot.classes]

    def state(step: int) -> dict[str, Any]:
        return {
            "model_name": cfg.model,
            "image_size": cfg.image_size or None,
            **{key: part.state_dict() for key, part in parts.stateful().items()},
            "step": step,
            "classes": classes,
            "config": cfg.options(),
            "version": f"{cfg.run_name}-step{step}",
        }

    validate: Callable[[], dict[str, float]] = dict
    if cfg.frozen_stages:
        module, loader, validate = feature_cache.prepare(
            cfg, store, snapshot, parts.model, parts.transform, num_classes, start, ranks.rank, ranks.world, unseen
        )
    else:
        module, loader = MofiTrainModule(parts.model), build_loader(cfg, s3, snapshot, parts, num_classes, start, ranks)

    def save(step: int) -> str:
        metrics[-1].update(validate())
        return checkpointer.save(step, lambda: state(step), metrics)

    step, uri = _loop(cfg, parts, module, loader, start, metrics, ranks, save)
    checkpointer.publish(uri, cfg.publish_uri)
    return TrainResult(cfg.run_dir, uri, step, start, metrics)


def _loop(
    cfg: TrainConfig,
    parts: Parts,
    module: nn.Module,
    loader: Iterable[dict[str, Any]],
    start: int,
    metrics: list[dict[str, Any]],
    ranks: Ranks,
    save: Callable[[int], str],
) -> tuple[int, str]:
    """Steps ``start + 1 .. cfg.steps`` of ``module`` (the model's training forward; pixels or cached
    features, see ``feature_cache``) under DDP; appends to ``metrics``; returns (step, last checkpoint URI)."""
    model, optimizer, scheduler, device, world = (
        parts.model,
        parts.optimizer,
        parts.scheduler,
        ranks.device,
        ranks.world,
    )
    if world > 1:
        module = DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None)
    module.train()
    step, uri = start, ""
    progress = tqdm(total=cfg.steps, initial=start, desc=f"train {cfg.run_name}", disable=ranks.rank != 0)
    tick = time.perf_counter()
    for batch in loader:
        step += 1
        images = batch["images"].to(device, non_blocking=True)
        texts = batch["texts"].to(device) if batch["texts"] is not None else None
        targets = batch["targets"].to(device) if batch["targets"] is not None else None
        out = module(images, texts)
        losses = parts.loss_fn(
            out["image_features"], out["text_features"], out["logit_scale"], out.get("class_cos"), targets
        )
        optimizer.zero_grad(set_to_none=True)
        losses["loss"].backward()
        optimizer.step()
        scheduler.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, MAX_LOGIT_SCALE)
        values = torch.stack([losses["loss"].detach(), losses["class_loss"], losses["contrastive_loss"]]).float()
        if world > 1:
            dist.all_reduce(values)
            values /= world
        now = time.perf_counter()
        record = {
            "step": step,
            "loss": float(values[0]),
            "class_loss": float(values[1]),
            "contrastive_loss": float(values[2]),
            "lr": scheduler.get_last_lr()[0],
            "images_per_s": world * len(images) / max(now - tick, 1e-9),
        }
        tick = now
        metrics.append(record)
        progress.update(1)
        progress.set_postfix(loss=f"{record['loss']:.3f}")
        if step % cfg.checkpoint_every == 0 or step == cfg.steps:
            uri = save(step)
        if step >= cfg.steps:
            break
    progress.close()
    return step, uri
