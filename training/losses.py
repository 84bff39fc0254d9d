"""MOFI's objective: L = lambda * L_class + (1 - lambda) * L_contrast.

``L_class`` is CosFace (large-margin cosine softmax) over the snapshot's entity classes: logits are
``s * (cos(x, w_c) - m * [c is a positive])`` with L2-normalised image embedding ``x`` and class
weights ``w_c`` (``mofi_platform.training.models.EntityHead`` gives the cosines).

Images with several entities (an I2E image keeps every entity the scorer accepted): we use a
multi-positive margin softmax. Each positive class of an image is a separate term whose softmax
runs over that positive and the image's *negatives* only, so the other true entities of the image
are never pushed away; an image's terms are averaged, then images are averaged (an image with five
entities weighs as much as one with one). With exactly one positive this is plain CosFace, and
images whose entities are all outside the class table contribute nothing. Sampling one positive
per step would be the other choice; it wastes the other labels and makes the loss noisier.

``L_contrast`` is CLIP's symmetric InfoNCE between image embeddings and text embeddings, with
features gathered across DDP ranks exactly as open_clip's ``ClipLoss`` does (we use it, with
``local_loss=True, gather_with_grad=True``: each rank scores its own rows against the global batch
and gradients flow back through the gather). Identical texts in a batch (two images of one
entity) are false negatives of each other; at web scale they are rare, at our scale they only
raise the loss floor.

Recipes: ``supervised`` (lambda=1, no text tower), ``contrastive`` (lambda=0, no classes; CLIP on
raw alt-text), ``multitask`` (lambda=0.5, the paper's default). A recipe only sets defaults: lambda,
CosFace s and m, the contrastive temperature (initial value, learnt or fixed) and which entity text
the contrastive side sees (the name, or "name: description") are :class:`LossConfig` fields.

Chance level of the class loss (:func:`cosface_chance_loss`): a head that scores every class alike
(all cosines equal) gives each positive term ``softplus(s*m + ln N)`` with ``N`` negatives, i.e.
``ln(1 + (C - P) * e^(s*m))`` for an image with ``P`` of the ``C`` classes; a class loss at that
level means the head separates nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from open_clip.loss import ClipLoss
from torch import nn

__all__ = ["RECIPES", "Recipe", "LossConfig", "ENTITY_TEXTS", "cosface_loss", "cosface_chance_loss", "MofiLoss"]

#: What the contrastive side of an entity-text recipe reads: the entity's name, or "name: description".
ENTITY_TEXTS = ("name_description", "name")


@dataclass(frozen=True)
class Recipe:
    """How a recipe trains: the class-loss weight and which text the contrastive loss sees."""

    lam: float
    text_source: str  # "entity" ("name: description" of an image's entity) | "alt_text" | "none"


RECIPES: dict[str, Recipe] = {
    "supervised": Recipe(lam=1.0, text_source="none"),
    "contrastive": Recipe(lam=0.0, text_source="alt_text"),
    "multitask": Recipe(lam=0.5, text_source="entity"),
}


@dataclass(frozen=True)
class LossConfig:
    """The objective's settings: the recipe picks the contrastive texts and the default lambda.

    ``TrainConfig`` holds one as its ``loss`` field; field help texts become ``mofi train`` options.
    The temperature is the model's ``logit_scale`` (``ln(1 / temperature)``): ``temperature`` sets its
    start (unset: the model config's), ``learn_temperature`` whether training changes it.
    """

    recipe: str = field(metadata={"help": "supervised | contrastive | multitask."})
    class_weight: float | None = field(
        default=None,
        metadata={"help": "Lambda, the class-loss weight (the contrastive loss gets 1 - lambda); unset: the recipe's."},
    )
    cosface_scale: float = field(default=32.0, metadata={"help": "CosFace scale s."})
    cosface_margin: float = field(default=0.2, metadata={"help": "CosFace margin m."})
    temperature: float | None = field(
        default=None,
        metadata={"help": "Initial contrastive temperature (logit scale 1/temperature); unset: the model config's."},
    )
    learn_temperature: bool = field(default=True, metadata={"help": "Learn the temperature (else it stays fixed)."})
    entity_text: str = field(
        default="name_description",
        metadata={"help": 'Entity text of the contrastive side: name_description ("name: description") | name.'},
    )

    def __post_init__(self) -> None:
        lam = self.lam  # raises ValueError naming an unknown recipe
        if not 0.0 <= lam <= 1.0 or (lam < 1 and self.spec.text_source == "none"):
            raise ValueError(
                f"class weight {lam} does not fit recipe {self.recipe} (0 to 1; exactly 1 when the recipe has no texts)"
            )
        if self.temperature is not None and not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if self.entity_text not in ENTITY_TEXTS:
            raise ValueError(f"unknown entity text {self.entity_text!r}; one of {', '.join(ENTITY_TEXTS)}")

    @property
    def spec(self) -> Recipe:
        try:
            return RECIPES[self.recipe]
        except KeyError:
            raise ValueError(f"unknown recipe {self.recipe!r}; one of {', '.join(RECIPES)}") from None

    @property
    def lam(self) -> float:
        """Lambda: ``class_weight``, else the recipe's."""
        return self.spec.lam if self.class_weight is None else self.class_weight

    @property
    def uses_classes(self) -> bool:
        return self.lam > 0

    @property
    def uses_text(self) -> bool:
        return self.lam < 1


def cosface_loss(cos: torch.Tensor, targets: torch.Tensor, scale: float, margin: float) -> torch.Tensor:
    """Multi-positive CosFace. ``cos`` (B, C) cosines; ``targets`` (B, C) bool, True = positive."""
    targets = targets.bool()
    logits = scale * (cos - margin * targets.to(cos.dtype))
    negatives = logits.masked_fill(targets, float("-inf"))
    neg_lse = torch.logsumexp(negatives, dim=1, keepdim=True)  # -inf when every class is positive
    # -log(e^{l_p} / (e^{l_p} + sum_n e^{l_n})) = softplus(lse_n - l_p)
    per_positive = F.softplus(neg_lse - logits) * targets
    n_pos = targets.sum(dim=1)
    has_pos = n_pos > 0
    if not bool(has_pos.any()):
        return cos.sum() * 0.0
    per_image = per_positive.sum(dim=1)[has_pos] / n_pos[has_pos]
    return per_image.mean()


def cosface_chance_loss(num_classes: int, scale: float, margin: float, positives: int = 1) -> float:
    """The :func:`cosface_loss` of a head whose cosines are all equal: ``ln(1 + (C - P) * e^(s*m))``.

    ``C`` classes of which an image has ``P`` (the loss then does not depend on the cosine's value).
    """
    if num_classes <= positives:
        return 0.0
    return math.log1p((num_classes - positives) * math.exp(scale * margin))


class MofiLoss(nn.Module):
    """Combined loss; returns ``{"loss", "class_loss", "contrastive_loss"}`` (the unused part is 0)."""

    def __init__(self, cfg: LossConfig, rank: int = 0, world_size: int = 1):
        super().__init__()
        self.cfg = cfg
        self.lam = cfg.lam
        self.clip = ClipLoss(
            local_loss=True, gather_with_grad=True, cache_labels=True, rank=rank, world_size=world_size
        )

    def forward(
        self,
        image_features: torch.Tensor,
        text_features: torch.Tensor | None = None,
        logit_scale: torch.Tensor | None = None,
        class_cos: torch.Tensor | None = None,
        targets: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        zero = image_features.sum() * 0.0
        class_loss = contrastive = zero
        if self.cfg.uses_classes:
            if class_cos is None or targets is None:
                raise ValueError(f"recipe {self.cfg.recipe} needs class cosines and targets")
            class_loss = cosface_loss(class_cos, targets, self.cfg.cosface_scale, self.cfg.cosface_margin)
        if self.cfg.uses_text:
            if text_features is None or logit_scale is None:
                raise ValueError(f"recipe {self.cfg.recipe} needs text features and a logit scale")
            contrastive = self.clip(image_features, text_features, logit_scale)
        return {
            "loss": self.lam * class_loss + (1 - self.lam) * contrastive,
            "class_loss": class_loss.detach(),
            "contrastive_loss": contrastive.detach(),
        }
