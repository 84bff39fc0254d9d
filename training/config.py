"""What one training run is: ``TrainConfig`` (with its ``LossConfig``) and its flat options.

Why flat options: ``mofi train`` flags, the pipeline's ``train_options`` JSON, the torchx job's
command line and the checkpoint's ``config`` all name a setting by one flat name (``lr``,
``recipe``, ``cosface_scale``), while the trainer reads the nested config. :func:`option_fields`,
:meth:`TrainConfig.from_options`, :meth:`TrainConfig.options` and :func:`config_argv` are that
mapping, in one place. The defaults a deployment sets (model, recipe, checkpoint folder and
interval, pixel limit) are settings (:data:`SETTINGS_DEFAULTS`); every other default is a field
default here or in ``LossConfig``.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from mofi.objstore import join_uri
from mofi.settings import Settings
from mofi_platform.training.losses import LossConfig

__all__ = ["TrainConfig", "SETTINGS_DEFAULTS", "option_fields", "config_argv"]

#: Options whose default is a setting: option -> (section, field) of ``mofi.settings``.
SETTINGS_DEFAULTS: dict[str, tuple[str, str]] = {
    "model": ("training", "model"),
    "recipe": ("training", "recipe"),
    "checkpoint_dir": ("training", "checkpoint_dir"),
    "checkpoint_every": ("training", "checkpoint_every"),
    "max_pixels": ("data", "max_pixels"),
}


def _setting(option: str, settings: Settings | None = None) -> Any:
    section, name = SETTINGS_DEFAULTS[option]
    return getattr(getattr(settings or Settings(), section), name)


def _opt(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


def _default_loss() -> LossConfig:
    return LossConfig(_setting("recipe"))


@dataclass
class TrainConfig:
    """One training run. ``run_name`` names the checkpoint folder; the same name resumes.

    Field help texts become the ``mofi train`` options (``mofi_platform.training.cli``).
    """

    snapshot: str = _opt("", "I2E snapshot manifest URI (s3://<i2e_bucket>/snapshots/<version>/manifest.json).")
    run_name: str = _opt("", "Checkpoint folder under checkpoint_dir; rerunning the same name resumes it.")
    model: str = _opt(_setting("model"), "Registered model config.")
    steps: int = _opt(200, "Optimisation steps in total (including steps done before a resume).")
    batch_size: int = _opt(32, "Images per rank per step.")
    lr: float = _opt(3e-4, "Peak AdamW learning rate (linear warmup, cosine decay).")
    weight_decay: float = _opt(0.05, "AdamW weight decay (not on biases, norms, logit scale).")
    tower_lr_scale: float = _opt(
        0.1, "Learning-rate factor for the image and text towers (1.0 for towers trained from scratch)."
    )
    warmup_steps: int = _opt(10, "Linear warmup steps.")
    image_size: int = _opt(0, "Input size override; 0 keeps the model config's size.")
    context_length: int = _opt(
        0, "Text tokens per training text; 0 keeps the model config's (Hugging Face text towers only)."
    )
    pretrained_towers: bool = _opt(True, "Start from the offline pretrained towers the config names.")
    frozen_stages: int = _opt(
        0,
        "Image-trunk stages kept frozen (EfficientNet towers): their features are cached per snapshot and the "
        "upper stages, projections and entity head train on the cache (text tower frozen, its features cached "
        "too); 0 fine-tunes everything from pixels.",
    )
    top_classes: float = _opt(
        1.0,
        "Train on the most frequent fraction of the snapshot's entity classes (by image count, e.g. 0.25); "
        "images with none of them are left out of class-supervised recipes.",
    )
    holdout_classes: float = _opt(
        0.0,
        "Percent of the snapshot's entity classes (chosen by a hash of the entity id) left out of training; "
        "with frozen_stages, retrieval among their images is logged as val_unseen_map (entities never seen).",
    )
    cache_views: int = _opt(4, "Views cached per training image with frozen_stages: the plain view + augmented ones.")
    feature_cache: str = _opt("", "Folder of feature caches (s3://bucket/prefix or a path); empty: checkpoint_dir.")
    embedding: str = _opt(
        "projection",
        "Served image embedding: projection (the image-text space the losses train) | pooled_projection (the pooled "
        "trunk features beside it, equal weights; text-to-image ranking unchanged).",
    )
    checkpoint_dir: str = _opt(_setting("checkpoint_dir"), "Where run folders go: s3://bucket/prefix or a local path.")
    checkpoint_every: int = _opt(_setting("checkpoint_every"), "Steps between checkpoints.")
    keep_checkpoints: int = _opt(2, "Step checkpoints kept per run (older ones are deleted after each save).")
    publish_uri: str = _opt("", "Also write the final checkpoint here (e.g. the embedder's checkpoint URI).")
    num_workers: int = _opt(0, "DataLoader worker processes per rank.")
    shuffle_buffer: int = _opt(256, "Samples in the streaming shuffle buffer.")
    seed: int = _opt(0, "Seed for initialisation and data order.")
    device: str = _opt(
        "auto",
        "auto: CUDA (NCCL) when available, else the CPU (gloo); cuda: fail unless this torch build sees a GPU; cpu.",
    )
    max_pixels: int = _opt(_setting("max_pixels"), "Images with more pixels are skipped.")
    loss: LossConfig = field(default_factory=_default_loss)  # its fields are options of their own

    @property
    def run_dir(self) -> str:
        return join_uri(self.checkpoint_dir, self.run_name)

    @classmethod
    def from_options(cls, options: Mapping[str, Any], settings: Settings | None = None) -> TrainConfig:
        """The config of flat ``options``; settings-backed ones not given come from ``settings``.

        An unknown option is a ``TypeError`` (as for any unexpected keyword).
        """
        values = {k: v for k, v in options.items() if v is not None}
        for option in SETTINGS_DEFAULTS:
            values.setdefault(option, _setting(option, settings))
        loss = {f.name: values.pop(f.name) for f in dataclasses.fields(LossConfig) if f.name in values}
        return cls(**values, loss=LossConfig(**loss))

    def options(self) -> dict[str, Any]:
        """The flat options of this config (also the checkpoint's ``config``)."""
        return {name: value for name, _, _, value in _flat(self)}


def _flat(cfg: Any) -> Iterator[tuple[str, dataclasses.Field, Any, Any]]:
    """(option, field, type, value) of every leaf field of a config (value None for a config class), in order."""
    cls = cfg if isinstance(cfg, type) else type(cfg)
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        value = None if cfg is cls else getattr(cfg, f.name)
        if dataclasses.is_dataclass(hints[f.name]):
            yield from _flat(hints[f.name] if cfg is cls else value)
        else:
            yield f.name, f, hints[f.name], value


def option_fields() -> list[tuple[str, dataclasses.Field, Any]]:
    """(option, field, type) of every ``mofi train`` option, in ``TrainConfig`` order."""
    return [(name, f, hint) for name, f, hint, _ in _flat(TrainConfig)]


def config_argv(cfg: TrainConfig) -> list[str]:
    """``mofi train`` arguments that rebuild ``cfg`` exactly (unset optional values are left out)."""
    args: list[str] = []
    for name, value in cfg.options().items():
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            args.append(flag if value else "--no-" + flag[2:])
        elif value is not None:
            args += [flag, str(value)]
    return args
