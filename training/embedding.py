"""What a trained model serves as its image embedding: the projection, or the pooled features beside it.

Why a choice: the projection is the space the losses train (entity classes and image-text
contrast), and it specialises to the training entities. Measured on the demo's snapshot with a
tenth of its entities held out of training (RESULTS.md), the pooled trunk features and the
projection, each L2-normalised and joined with equal weight (``pooled_projection``), retrieve
those never-seen entities better than the projection alone in every seed, and keep more of what the
ImageNet trunk knows about images unlike the training data.

Texts live only in the projection's space, so a text embedding is zero on the pooled part: the
cosine of a text with an image is then the projection's cosine times 1/sqrt(2), and text-to-image
ranking (search, zero-shot) is exactly the projection's. Image-to-image cosine is the mean of the
two parts' cosines.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["EMBEDDINGS", "check_embedding", "join", "image_embedding", "text_embedding"]

EMBEDDINGS = ("projection", "pooled_projection")


def _pooled_tower(model: nn.Module) -> nn.Module:
    visual = model.visual
    if not (hasattr(visual, "trunk") and hasattr(visual, "head")):
        raise ValueError(f"pooled_projection needs a trunk + projection image tower; {type(visual).__name__} has none")
    return visual


def check_embedding(model: nn.Module, kind: str) -> None:
    """ValueError for an unknown kind, or ``pooled_projection`` on a tower without pooled trunk features."""
    if kind not in EMBEDDINGS:
        raise ValueError(f"unknown embedding {kind!r}; one of {', '.join(EMBEDDINGS)}")
    if kind == "pooled_projection":
        _pooled_tower(model)


def join(pooled: torch.Tensor, projected: torch.Tensor) -> torch.Tensor:
    """Unit vectors ``[pooled, projected]``, each part L2-normalised and weighted 1/sqrt(2)."""
    half = math.sqrt(0.5)
    return torch.cat([F.normalize(pooled, dim=-1) * half, F.normalize(projected, dim=-1) * half], dim=-1)


def image_embedding(model: nn.Module, images: torch.Tensor, kind: str) -> torch.Tensor:
    """L2-normalised image embeddings of ``kind``."""
    if kind == "projection":
        return model.encode_image(images, normalize=True)
    visual = _pooled_tower(model)
    pooled = visual.trunk(images)
    return join(pooled, visual.head(pooled))


def text_embedding(model: nn.Module, tokens: torch.Tensor, kind: str) -> torch.Tensor:
    """L2-normalised text embeddings in the space of ``kind``'s image embeddings."""
    text = model.encode_text(tokens, normalize=True)
    if kind == "projection":
        return text
    pooled_dim = _pooled_tower(model).trunk.num_features
    return torch.cat([text.new_zeros(text.shape[0], pooled_dim), text], dim=-1)
