"""Image-text cosine scoring over an embedding model, batched, with a cache of text embeddings.

Why a text cache: the scorer compares each image with the "name: description" text of its
candidate entities, and the same few thousand entities recur across millions of images. Caching
their embeddings leaves one image forward pass per pair as the cost that matters. The cache holds
embeddings of one model version only: it is emptied whenever the model (or its version) changes, so
a reloaded scorer never compares images with a previous model's text embeddings.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Protocol

import numpy as np
from PIL import Image

__all__ = ["EmbeddingBackend", "ClipScorer", "entity_text"]


class EmbeddingBackend(Protocol):
    """What the scorer needs from a model (``mofi_platform.training.inference.EmbeddingModel`` provides it)."""

    version: str
    image_size: int  # the side images are resized to

    def embed_images(self, images: list[Image.Image]) -> np.ndarray: ...

    def embed_texts(self, texts: list[str]) -> np.ndarray: ...


def entity_text(name: str, description: str) -> str:
    """The text an entity is scored by: ``"name: description"`` (just the name without a description)."""
    name, description = name.strip(), description.strip()
    return f"{name}: {description}" if description else name


class ClipScorer:
    """Cosine similarities between images and texts from one L2-normalising embedding model.

    Thread-safe: calls are serialised by a lock (the model runs one forward pass at a time anyway);
    the gRPC service batches concurrent requests before they get here. :meth:`reload` swaps the
    model between batches.

    Images go through the model ``image_batch`` at a time: on CPU a convolutional tower's
    activations for 8 images at 160-224 px still fit the last-level cache, for 32 they do not, and
    the per-image cost grows with the batch beyond that (an image's embedding does not depend on
    its batch, so the results are the same).
    """

    def __init__(self, model: EmbeddingBackend, text_cache_size: int = 16384, image_batch: int = 8, text_table=None):
        if image_batch < 1:
            raise ValueError("image_batch must be >= 1")
        self.model = model
        self.text_table = text_table  # a ProjectedTable for this model (entity texts without a text pass)
        self.text_cache_size = text_cache_size
        self.image_batch = image_batch
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_owner: tuple[int, str] = (id(model), model.version)  # whose embeddings the cache holds
        self._lock = threading.Lock()

    @property
    def version(self) -> str:
        return self.model.version

    @property
    def image_size(self) -> int:
        """The current model's input size (images can be decoded reduced to about this)."""
        return self.model.image_size

    def reload(self, model: EmbeddingBackend, text_table=None) -> None:
        """Score with ``model`` (and ``text_table``, made for it) from the next batch on; the text cache starts
        empty."""
        with self._lock:
            self.model = model
            self.text_table = text_table
            self._cache.clear()
            self._cache_owner = (id(model), model.version)

    def _text_embeddings(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        owner = (id(self.model), self.model.version)
        if owner != self._cache_owner:  # the model was replaced or re-versioned behind our back
            self._cache.clear()
            self._cache_owner = owner
            self.text_table = None  # it was made for the previous model
        # by length: a text batch costs as much as its longest text (see mofi_platform.services.scorer.tuning)
        missing = sorted((t for t in dict.fromkeys(texts) if t not in self._cache), key=len)
        if missing and self.text_table is not None:
            self._cache.update(self.text_table.lookup(missing))
            missing = [t for t in missing if t not in self._cache]
        if missing:
            for t, v in zip(missing, self.model.embed_texts(missing)):
                self._cache[t] = v
        out = {}
        for t in texts:
            self._cache.move_to_end(t)
            out[t] = self._cache[t]
        while len(self._cache) > self.text_cache_size:
            self._cache.popitem(last=False)
        return out

    def score_many(self, items: Sequence[tuple[Image.Image, Sequence[str]]]) -> list[np.ndarray]:
        """For each (image, texts): float32 cosines, one per text, in order.

        Image forward passes (of ``image_batch``) for the items that have texts, one text pass for
        the texts of all items not in the cache; an item without texts costs nothing (a pair whose
        alt-text named no entity needs no image embedding).
        """
        out = [np.zeros(0, np.float32) for _ in items]
        todo = [i for i, (_, ts) in enumerate(items) if ts]
        if not todo:
            return out
        with self._lock:
            texts = self._text_embeddings([t for i in todo for t in items[i][1]])
            chunks = [todo[k : k + self.image_batch] for k in range(0, len(todo), self.image_batch)]
            images = np.concatenate([self.model.embed_images([items[i][0] for i in chunk]) for chunk in chunks])
        for vec, i in zip(images, todo):
            out[i] = (np.stack([texts[t] for t in items[i][1]]) @ vec).astype(np.float32)
        return out
