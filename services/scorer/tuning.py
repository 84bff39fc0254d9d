"""CPU inference tuning of the scorer's model: BatchNorm folded into convolutions, channels-last,
text batches without all-padding columns.

Why: the scorer only ever runs its model forward, in eval mode. The image tower is what every pair
pays for; in a convolutional tower (EfficientNet-Lite0) about a quarter of the CPU time goes to
BatchNorm layers that, with fixed statistics, are a per-channel affine map, i.e. a change of the
preceding convolution's weights and bias. Folding them removes those passes over the activations,
and channels-last memory lets oneDNN run the depthwise and pointwise convolutions without layout
conversions. The text tower runs once per entity text not yet cached, and on a real corpus most
candidate entities are seen for the first time; its tokenizer pads every text to the context length
(32 for MiniLM) although entity texts average about half that. A Hugging Face text tower masks
padding out of attention and pooling, so cutting the columns that are padding in every text of a
batch changes no embedding; with batches sorted by length (:class:`~mofi_platform.services.scorer.scoring.ClipScorer`)
it saved about a third of the text tower's time on real corpus entity texts.

Only the exact pattern ``conv -> BatchNorm`` inside the blocks listed in :func:`_pairs` is folded;
a BatchNorm that carries an activation (timm's ``BatchNormAct2d``) is replaced by that activation.
Each change is checked against the untouched model on probe images and texts before it is used:
if the embeddings differ by more than float rounding, that tower is kept as it was and a warning
is logged.
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

__all__ = ["TuneReport", "TrimmedTokenizer", "fold_batchnorm", "tune_for_cpu"]

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
    arrays = [
        rng.integers(0, 256, (128, 96, 3), dtype=np.uint8),
        gradient.astype(np.uint8),
        np.full((64, 64, 3), 128, np.uint8),
    ]
    return torch.stack([eval_transform(Image.fromarray(a)) for a in arrays])


class TrimmedTokenizer:
    """The model's tokenizer with the trailing columns that are padding in every text of the batch cut off."""

    def __init__(self, tokenizer, pad_id: int):
        self.tokenizer = tokenizer
        self.pad_id = pad_id

    def __call__(self, texts, *args, **kwargs) -> torch.Tensor:
        ids = self.tokenizer(texts, *args, **kwargs)
        if not isinstance(ids, torch.Tensor) or ids.dim() != 2 or ids.shape[1] == 0:
            return ids
        used = (ids != self.pad_id).any(0).nonzero()
        return ids[:, : int(used.max()) + 1 if len(used) else 1]


#: Probe texts of the lengths entity texts have: a name alone, "name: description", and one past the context.
PROBE_TEXTS = [
    "tiger",
    "Paris: capital and largest city of France",
    "grinning face: a smiling face emoji",
    "Helix Nebula: a planetary nebula in the constellation Aquarius, one of the closest to the Earth, "
    "about 650 light-years away, with a central white dwarf and a ring of glowing gas",
]


@dataclass(frozen=True)
class TuneReport:
    """What :func:`tune_for_cpu` changed; a ``*_note`` says why a tower was left as it was."""

    image_tuned: bool = False  # BatchNorm folded, channels-last
    folded: int = 0
    image_diff: float = 0.0  # largest |difference| of normalised probe embeddings, tuned vs original
    image_note: str = ""
    text_trimmed: bool = False
    text_diff: float = 0.0
    text_note: str = ""


def tune_for_cpu(model) -> TuneReport:
    """Tune an ``EmbeddingModel`` (open_clip model) in place where it is safe: its image tower and text batches.

    The image tower is tuned on a copy, compared with the original on probe images, and swapped in
    only when the L2-normalised embeddings agree within :data:`TOLERANCE`; the same check on probe
    texts (alone and in batches) guards the trimmed tokenizer.
    """
    clip = getattr(model, "model", None)
    if clip is None or not hasattr(clip, "encode_image") or not hasattr(clip, "encode_text"):
        return TuneReport(image_note="not an open_clip model", text_note="not an open_clip model")
    report = TuneReport(**_tune_image(model), **_tune_text(model))
    log.info("scorer model tuning: %s", report)
    return report


def _tune_image(model) -> dict:
    clip = model.model
    visual = getattr(clip, "visual", None)
    if visual is None:
        return {"image_note": "no image tower"}
    tuned = copy.deepcopy(visual)
    folded = fold_batchnorm(tuned)
    if not folded:
        return {"image_note": "no BatchNorm after a convolution"}
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
        return {"folded": folded, "image_note": f"{type(e).__name__}: {e}"}
    if not diff <= TOLERANCE:  # also catches NaN
        clip.visual = visual
        log.warning("scorer image tower left untuned: tuned embeddings differ by %.3g", diff)
        return {"folded": folded, "image_diff": diff, "image_note": f"embeddings differ by {diff:.3g}"}
    return {"image_tuned": True, "folded": folded, "image_diff": diff}


def _tune_text(model) -> dict:
    """Wrap ``model.tokenizer`` in :class:`TrimmedTokenizer` if the text tower masks padding (checked)."""
    clip = model.model
    config = getattr(getattr(clip, "text", None), "config", None)  # a Hugging Face text tower
    pad_id = getattr(config, "pad_token_id", None)
    if pad_id is None:
        return {"text_note": "not a Hugging Face text tower"}
    if isinstance(model.tokenizer, TrimmedTokenizer):
        return {"text_trimmed": True, "text_note": "already trimmed"}
    trimmed = TrimmedTokenizer(model.tokenizer, int(pad_id))
    try:
        with torch.inference_mode():
            want = clip.encode_text(model.tokenizer(PROBE_TEXTS), normalize=True)
            got = torch.cat(
                [
                    clip.encode_text(trimmed(texts), normalize=True)
                    for texts in (PROBE_TEXTS[:1], PROBE_TEXTS[1:3], PROBE_TEXTS[3:])
                ]
            )
        diff = float((got - want).abs().max())
    except Exception as e:  # a text tower this code does not understand: keep it as it was
        log.warning("scorer text batches left untrimmed: %s: %s", type(e).__name__, e)
        return {"text_note": f"{type(e).__name__}: {e}"}
    if not diff <= TOLERANCE:
        log.warning("scorer text batches left untrimmed: trimmed embeddings differ by %.3g", diff)
        return {"text_diff": diff, "text_note": f"embeddings differ by {diff:.3g}"}
    model.tokenizer = trimmed
    return {"text_trimmed": True, "text_diff": diff}
