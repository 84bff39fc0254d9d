"""CPU inference tuning of the scorer's image tower: BatchNorm folded into convolutions, channels-last.

Why: the scorer only ever runs its model forward, in eval mode, and the image tower is what every
pair pays for (text embeddings are cached). In a convolutional tower (EfficientNet-Lite0) about a
quarter of the CPU time goes to BatchNorm layers that, with fixed statistics, are a per-channel
affine map, i.e. a change of the preceding convolution's weights and bias. Folding them removes
those passes over the activations, and channels-last memory lets oneDNN run the depthwise and
pointwise convolutions without layout conversions (together about 2x images/s on one core).

Only the exact pattern ``conv -> BatchNorm`` inside the blocks listed in ``_PAIRS`` is folded; a
BatchNorm that carries an activation (timm's ``BatchNormAct2d``) is replaced by that activation.
The result is checked against the untouched tower on probe images before it is used: if the
embeddings differ by more than float rounding, the original tower is kept and a warning is logged.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torch import nn
from torchvision.ops.misc import FrozenBatchNorm2d as TvFrozenBatchNorm2d

__all__ = ["TuneReport", "fold_batchnorm", "tune_for_cpu"]

log = logging.getLogger(__name__)

#: Largest |difference| between tuned and original L2-normalised image embeddings that is accepted
#: (float32 rounding is ~1e-6; a wrong fold moves embeddings by orders of magnitude more).
TOLERANCE = 1e-4


def _pairs() -> dict[type, tuple[tuple[str, str], ...]]:
    """Block class -> (conv attribute, BatchNorm attribute) pairs where the BatchNorm directly follows the conv."""
    out: dict[type, tuple[tuple[str, str], ...]] = {}
    try:
        from timm.models import _efficientnet_blocks as blocks
        from timm.models.efficientnet import EfficientNet
    except ImportError:  # pragma: no cover - timm is a dependency; without it nothing is folded
        return out
    s2d = (("conv_s2d", "bn_s2d"),)
    out[EfficientNet] = (("conv_stem", "bn1"), ("conv_head", "bn2"))
    out[blocks.DepthwiseSeparableConv] = s2d + (("conv_dw", "bn1"), ("conv_pw", "bn2"))
    out[blocks.InvertedResidual] = s2d + (("conv_pw", "bn1"), ("conv_dw", "bn2"), ("conv_pwl", "bn3"))
    out[blocks.EdgeResidual] = (("conv_exp", "bn1"), ("conv_pwl", "bn2"))
    return out


def _affine(bn: nn.Module) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(scale, shift) of a BatchNorm with fixed statistics, per output channel; None if it has none."""
    mean, var = getattr(bn, "running_mean", None), getattr(bn, "running_var", None)
    if mean is None or var is None:
        return None
    n = mean.shape[0]
    weight = bn.weight if getattr(bn, "weight", None) is not None else torch.ones(n)
    bias = bn.bias if getattr(bn, "bias", None) is not None else torch.zeros(n)
    scale = weight.detach() * torch.rsqrt(var.detach() + bn.eps)
    return scale, bias.detach() - mean.detach() * scale


def _replacement(bn: nn.Module) -> nn.Module | None:
    """What stays of ``bn`` once its affine map is in the conv: nothing or its activation; None: not foldable."""
    try:
        from timm.layers import BatchNormAct2d, FrozenBatchNormAct2d
    except ImportError:  # pragma: no cover
        BatchNormAct2d = FrozenBatchNormAct2d = ()  # type: ignore[assignment]
    if isinstance(bn, (BatchNormAct2d, FrozenBatchNormAct2d)):
        if bn.training and isinstance(bn, BatchNormAct2d):
            return None  # batch statistics: not an affine map
        rest = [m for m in (bn.drop, bn.act) if not isinstance(m, nn.Identity)]
        return nn.Sequential(*rest) if len(rest) > 1 else (rest[0] if rest else nn.Identity())
    if isinstance(bn, TvFrozenBatchNorm2d):
        return nn.Identity()
    if type(bn) is nn.BatchNorm2d and not bn.training and bn.track_running_stats:
        return nn.Identity()
    return None


def fold_batchnorm(tower: nn.Module) -> int:
    """Fold every ``conv -> BatchNorm`` pair of known blocks in ``tower`` (in place); returns how many."""
    pairs = _pairs()
    folded = 0
    for module in list(tower.modules()):
        for conv_name, bn_name in next((p for cls, p in pairs.items() if isinstance(module, cls)), ()):
            conv, bn = getattr(module, conv_name, None), getattr(module, bn_name, None)
            if not isinstance(conv, nn.Conv2d) or bn is None:
                continue
            rest, affine = _replacement(bn), _affine(bn)
            if rest is None or affine is None or affine[0].shape[0] != conv.out_channels:
                continue
            scale, shift = affine
            with torch.no_grad():
                weight = conv.weight.detach() * scale.reshape(-1, 1, 1, 1)
                bias = shift if conv.bias is None else conv.bias.detach() * scale + shift
            conv.weight = nn.Parameter(weight, requires_grad=False)
            conv.bias = nn.Parameter(bias, requires_grad=False)
            setattr(module, bn_name, rest)
            folded += 1
    return folded


def _to_channels_last(module: nn.Module, args: tuple) -> tuple:
    x, *rest = args
    if isinstance(x, torch.Tensor) and x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    return (x, *rest)


def _probe(eval_transform) -> torch.Tensor:
    """Deterministic probe images through the model's own eval transform: noise, a colour gradient, flat grey."""
    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 255, 128, dtype=np.float32)
    gradient = np.stack(np.broadcast_arrays(ramp[None, :], ramp[:96, None], np.float32(96)), -1)
    arrays = [rng.integers(0, 256, (128, 96, 3), dtype=np.uint8), gradient.astype(np.uint8),
              np.full((64, 64, 3), 128, np.uint8)]
    return torch.stack([eval_transform(Image.fromarray(a)) for a in arrays])


@dataclass(frozen=True)
class TuneReport:
    applied: bool
    folded: int = 0
    channels_last: bool = False
    max_abs_diff: float = 0.0
    reason: str = ""


def tune_for_cpu(model) -> TuneReport:
    """Tune ``model.model.visual`` of an ``EmbeddingModel`` (open_clip model) in place, if it is safe.

    The tower is tuned on a copy, compared with the original on probe images, and swapped in only
    when the L2-normalised embeddings agree within :data:`TOLERANCE`.
    """
    clip = getattr(model, "model", None)
    visual = getattr(clip, "visual", None)
    if visual is None or not hasattr(clip, "encode_image"):
        return TuneReport(False, reason="no image tower")
    tuned = copy.deepcopy(visual)
    folded = fold_batchnorm(tuned)
    if not folded:
        return TuneReport(False, reason="no BatchNorm after a convolution")
    probe = _probe(model.eval_transform)
    with torch.inference_mode():
        want = clip.encode_image(probe, normalize=True)
    tuned.to(memory_format=torch.channels_last)
    tuned.register_forward_pre_hook(_to_channels_last)
    clip.visual = tuned
    try:
        with torch.inference_mode():
            got = clip.encode_image(probe, normalize=True)
        diff = float((got - want).abs().max())
    except Exception as e:  # a tower this code does not understand: keep it as it was
        clip.visual = visual
        log.warning("scorer image tower left untuned: %s: %s", type(e).__name__, e)
        return TuneReport(False, folded, reason=f"{type(e).__name__}: {e}")
    if not diff <= TOLERANCE:  # also catches NaN
        clip.visual = visual
        log.warning("scorer image tower left untuned: tuned embeddings differ by %.3g", diff)
        return TuneReport(False, folded, max_abs_diff=diff, reason=f"embeddings differ by {diff:.3g}")
    log.info("scorer image tower tuned: %d BatchNorm layers folded, channels-last (max diff %.2g)", folded, diff)
    return TuneReport(True, folded, True, diff)
