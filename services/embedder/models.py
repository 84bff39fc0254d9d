"""The model behind the embedder, swappable while calls are in flight.

Why a holder: a hot reload loads the new checkpoint beside the old one and swaps one reference;
each batched call reads the reference once, so every item of a batch is embedded by one model and
carries that model's version. Calls are never dropped: a batch already running finishes on the old
model, the next batch starts on the new one.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from mofi_platform.training.inference import EmbeddingModel

__all__ = ["Embedded", "ModelHolder", "IMAGE", "TEXT"]

log = logging.getLogger(__name__)

IMAGE = "image"
TEXT = "text"


@dataclass(frozen=True)
class Embedded:
    """One L2-normalised vector and the version of the model that produced it."""

    vector: np.ndarray
    version: str


class ModelHolder:
    """``embed_batch([(IMAGE, pil) | (TEXT, str), ...]) -> [Embedded, ...]`` on the current model."""

    def __init__(self, model: EmbeddingModel, loader: Callable[[str], EmbeddingModel] | None = None):
        self._model = model
        self._loader = loader
        self._reload_lock = threading.Lock()

    @property
    def model(self) -> EmbeddingModel:
        return self._model

    @property
    def version(self) -> str:
        return self._model.version

    @property
    def dim(self) -> int:
        return self._model.dim

    def swap(self, model: EmbeddingModel) -> EmbeddingModel:
        """Make ``model`` current; returns the previous one (still valid for batches already running)."""
        old, self._model = self._model, model
        log.info("embedder model %s -> %s", old.version, model.version)
        return old

    def reload(self, uri: str) -> str:
        """Load ``uri`` with the loader, then swap; a failed load leaves the current model serving."""
        if self._loader is None:
            raise RuntimeError("this holder has no loader")
        with self._reload_lock:  # two reload requests never load two models at once
            self.swap(self._loader(uri))
        return self.version

    def embed_batch(self, items: Sequence[tuple[str, Any]]) -> list[Embedded]:
        model = self._model  # read once: the whole batch uses one model
        out: list[Embedded | None] = [None] * len(items)
        for kind, embed in ((IMAGE, model.embed_images), (TEXT, model.embed_texts)):
            idx = [i for i, (k, _) in enumerate(items) if k == kind]
            if idx:
                vectors = embed([items[i][1] for i in idx])
                for i, v in zip(idx, vectors):
                    out[i] = Embedded(v, model.version)
        missing = [items[i][0] for i, e in enumerate(out) if e is None]
        if missing:
            raise ValueError(f"unknown item kinds {sorted(set(missing))}")
        return out  # type: ignore[return-value]

    def embed_images(self, images: Sequence[Image.Image]) -> list[Embedded]:
        return self.embed_batch([(IMAGE, im) for im in images])
