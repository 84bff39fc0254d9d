"""The model behind the embedder, swappable while calls are in flight.

Why a holder: a hot reload loads the new checkpoint beside the old one and swaps one reference;
each batched call reads the reference once, so every item of a batch is embedded by one model and
carries that model's version. Calls are never dropped: a batch already running finishes on the old
model, the next batch starts on the new one.

Why it keeps more than one model: a query vector is only comparable with vectors of the model that built
the collection it searches. The holder keeps the previous model through a swap and loads, on demand, the
checkpoint a collection records (:meth:`ModelHolder.model_for`), so Search embeds every query with the
collection's own model whichever model the Embed calls serve; a model it cannot get is
:class:`ModelUnavailable`, never a silent stand-in.
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

__all__ = ["Embedded", "ModelHolder", "ModelUnavailable", "IMAGE", "TEXT", "KEPT_MODELS"]

log = logging.getLogger(__name__)

IMAGE = "image"
TEXT = "text"
#: Models kept loaded besides the current one (the previous one through a swap, collections' models).
KEPT_MODELS = 2


class ModelUnavailable(LookupError):
    """No model is loaded yet, or a collection's model cannot be loaded; the message says which and why."""


@dataclass(frozen=True)
class Embedded:
    """One L2-normalised vector and the version of the model that produced it."""

    vector: np.ndarray
    version: str


class ModelHolder:
    """``embed_batch([(IMAGE, pil) | (TEXT, str) [, model], ...]) -> [Embedded, ...]``, on the current model
    unless an item names its model. ``model`` may be None until a first model is loaded (:meth:`reload`)."""

    def __init__(
        self,
        model: EmbeddingModel | None,
        loader: Callable[[str], EmbeddingModel] | None = None,
        uri: str = "",
    ):
        self._model = model
        self._loader = loader
        self.uri = uri if model is not None else ""  # where the current model came from
        self._kept: dict[str, EmbeddingModel] = {}  # version -> model, oldest first
        self._reload_lock = threading.Lock()

    @property
    def model(self) -> EmbeddingModel:
        model = self._model
        if model is None:
            raise ModelUnavailable("no model is loaded yet (see the server log for why)")
        return model

    @property
    def loaded(self) -> bool:
        return self._model is not None

    @property
    def version(self) -> str:
        return self.model.version

    @property
    def dim(self) -> int:
        return self.model.dim

    def _keep(self, model: EmbeddingModel) -> None:
        self._kept.pop(model.version, None)
        self._kept[model.version] = model
        while len(self._kept) > KEPT_MODELS:
            self._kept.pop(next(iter(self._kept)))

    def swap(self, model: EmbeddingModel, uri: str = "") -> EmbeddingModel | None:
        """Make ``model`` current; returns the previous one (kept, and valid for batches already running)."""
        old, self._model = self._model, model
        self.uri = uri
        if old is not None and old.version != model.version:
            self._keep(old)
        log.info("embedder model %s -> %s", old.version if old else "none", model.version)
        return old

    def reload(self, uri: str) -> str:
        """Load ``uri`` with the loader, then swap; a failed load leaves the current model serving."""
        if self._loader is None:
            raise RuntimeError("this holder has no loader")
        with self._reload_lock:  # two reload requests never load two models at once
            self.swap(self._loader(uri), uri)
        return self.version

    def model_for(self, version: str, checkpoint: str) -> EmbeddingModel:
        """The model of ``version``: the current one, a kept one, or ``checkpoint`` loaded now (and kept).

        Raises :class:`ModelUnavailable` when none of these gives that version.
        """
        for model in (self._model, *self._kept.values()):
            if model is not None and model.version == version:
                return model
        if not checkpoint or self._loader is None:
            raise ModelUnavailable(f"model {version!r} is not loaded and no checkpoint to load it from is recorded")
        with self._reload_lock:
            found = self._kept.get(version)
            if found is not None:
                return found
            try:
                model = self._loader(checkpoint)
            except Exception as e:
                raise ModelUnavailable(f"model {version!r} cannot be loaded from {checkpoint}: {e}") from None
            if model.version != version:
                raise ModelUnavailable(f"{checkpoint} now holds model {model.version!r}, not {version!r}")
            log.info("loaded model %s from %s for a collection it built", version, checkpoint)
            self._keep(model)
            return model

    def embed_batch(self, items: Sequence[tuple[Any, ...]]) -> list[Embedded]:
        current = self._model  # read once: items without a model of their own all use this one
        models = [it[2] if len(it) > 2 else current for it in items]
        out: list[Embedded | None] = [None] * len(items)
        for model in {id(m): m for m in models}.values():
            if model is None:
                raise ModelUnavailable("no model is loaded yet (see the server log for why)")
            for kind, embed in ((IMAGE, model.embed_images), (TEXT, model.embed_texts)):
                idx = [i for i, it in enumerate(items) if it[0] == kind and models[i] is model]
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
