"""Frozen MOFI (or CLIP scorer) model for inference: images and texts in, L2-normalised vectors out.

Services (scorer, embedder) and evaluation share this wrapper so preprocessing, tokenisation and
normalisation are identical everywhere. Calls are serialised by a lock: one forward pass at a
time, which is what the services' dynamic batchers do anyway.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from mofi.objstore import ObjectStore
from mofi.settings import S3Settings
from mofi_platform.training.checkpoint import load_checkpoint
from mofi_platform.training.embedding import check_embedding, image_embedding, text_embedding
from mofi_platform.training.models import create_model_and_transforms, get_tokenizer

__all__ = ["EmbeddingModel"]

#: Inputs per forward pass inside ``embed_images``/``embed_texts`` (bounds memory for long lists).
CHUNK = 64


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
            lambda chunk: image_embedding(
                self.model, torch.stack([self.eval_transform(im.convert("RGB")) for im in chunk]), self.embedding
            ),
        )

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
