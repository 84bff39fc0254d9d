"""Frozen MOFI (or CLIP scorer) model for inference: images and texts in, L2-normalised vectors out.

Services (scorer, embedder) and evaluation share this wrapper so preprocessing, tokenisation and
normalisation are identical everywhere. Calls are serialised by a lock: one forward pass at a
time, which is what the services' dynamic batchers do anyway.

Why images are converted to tensors a batch at a time: the eval transform's tensor steps (to float,
normalise) are tiny per image, and with several torch threads each tiny op pays the thread pool's
start-up; per image they cost more CPU than the forward pass on a loaded machine. The transform's
PIL steps (resize, crop) still run per image, then one conversion and one normalisation serve the
batch, with values identical to the per-image transform.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn
from torchvision.transforms import Normalize, ToTensor

from mofi.objstore import ObjectStore
from mofi.settings import S3Settings
from mofi_platform.training.checkpoint import load_checkpoint
from mofi_platform.training.embedding import check_embedding, image_embedding, text_embedding
from mofi_platform.training.models import create_model_and_transforms, get_tokenizer

__all__ = ["EmbeddingModel"]

#: Inputs per forward pass inside ``embed_images``/``embed_texts`` (bounds memory for long lists).
CHUNK = 64


def _split_transform(transform: Callable) -> tuple[list[Callable], list[Callable]] | None:
    """(PIL steps, batch steps) of a ``Compose`` of PIL steps, one ``ToTensor`` and then only
    ``Normalize`` steps (what open_clip's eval transform is); None for any other transform."""
    steps = list(getattr(transform, "transforms", []))
    at = [i for i, step in enumerate(steps) if isinstance(step, ToTensor)]
    if len(at) != 1 or not all(isinstance(step, Normalize) for step in steps[at[0] + 1 :]):
        return None
    return steps[: at[0]], steps[at[0] + 1 :]


class EmbeddingModel:
    """An eval-mode model with its eval transform and tokenizer."""

    def __init__(
        self,
        model: nn.Module,
        eval_transform: Callable[[Image.Image], torch.Tensor],
        tokenizer: Callable[[list[str]], torch.Tensor],
        version: str,
        model_name: str,
        classes: Sequence[dict[str, Any]] = (),
        embedding: str = "projection",
    ):
        check_embedding(model, embedding)
        self.model = model.eval()
        self.embedding = embedding  # mofi_platform.training.embedding: what an image embedding is
        self.eval_transform = eval_transform
        self._transform_steps = _split_transform(eval_transform)
        self.tokenizer = tokenizer
        self.version = version
        self.model_name = model_name
        self.classes = list(classes)
        self._lock = threading.Lock()
        with torch.inference_mode():
            probe = text_embedding(self.model, self.tokenizer(["probe"]), embedding)
        self.dim = int(probe.shape[-1])

    @classmethod
    def load(cls, uri: str, s3: S3Settings | None = None) -> EmbeddingModel:
        """Load a checkpoint from a local path or ``s3://bucket/key``."""
        return cls.from_checkpoint(load_checkpoint(ObjectStore(s3 or S3Settings()), uri))

    @classmethod
    def from_checkpoint(cls, ckpt: dict[str, Any]) -> EmbeddingModel:
        name = ckpt["model_name"]
        state = ckpt["model"]
        head = state.get("entity_head.weight")
        model, _, eval_transform = create_model_and_transforms(
            name, num_classes=0 if head is None else head.shape[0], image_size=ckpt.get("image_size")
        )
        model.load_state_dict(state, strict=True)
        embedding = ckpt.get("config", {}).get("embedding", "projection")
        return cls(
            model,
            eval_transform,
            get_tokenizer(name),
            ckpt.get("version", name),
            name,
            ckpt.get("classes", ()),
            embedding,
        )

    @classmethod
    def from_model(
        cls,
        model: nn.Module,
        eval_transform: Callable[[Image.Image], torch.Tensor],
        tokenizer: Callable[[list[str]], torch.Tensor],
        version: str,
        model_name: str = "unnamed",
    ) -> EmbeddingModel:
        return cls(model, eval_transform, tokenizer, version, model_name)

    @property
    def image_size(self) -> int:
        """The input size images are resized and cropped to (the checkpoint's, else its model config's)."""
        size = self.model.visual.image_size
        return int(size[0] if isinstance(size, (tuple, list)) else size)

    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        """(n, dim) float32, rows L2-normalised."""
        return self._embed(
            images,
            lambda chunk: image_embedding(self.model, self.image_batch(chunk), self.embedding),
        )

    def image_batch(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """The model's input for ``images``: exactly what the eval transform gives each, stacked."""
        rgb = [im if im.mode == "RGB" else im.convert("RGB") for im in images]
        if self._transform_steps is None:
            return torch.stack([self.eval_transform(im) for im in rgb])
        pil_steps, batch_steps = self._transform_steps
        arrays = []
        for im in rgb:
            for step in pil_steps:
                im = step(im)
            arrays.append(np.asarray(im))
        batch = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous().float().div_(255)
        for step in batch_steps:
            batch = step(batch)
        return batch

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """(n, dim) float32, rows L2-normalised."""
        return self._embed(texts, lambda chunk: text_embedding(self.model, self.tokenizer(list(chunk)), self.embedding))

    def _embed(self, items: Sequence[Any], encode: Callable[[Sequence[Any]], torch.Tensor]) -> np.ndarray:
        if len(items) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        out = []
        with self._lock, torch.inference_mode():
            for start in range(0, len(items), CHUNK):
                out.append(encode(items[start : start + CHUNK]).float().cpu().numpy())
        return np.concatenate(out).astype(np.float32, copy=False)
