"""The model and the vector store a process opens from its settings.

Why apart from :mod:`~mofi_platform.services.embedder.app`: the server, the indexer stage and the
batch indexer (:func:`~mofi_platform.services.embedder.indexing.index_images`) all open them, and
``app`` imports the indexer; with the openers here, imports only go one way.
"""

from __future__ import annotations

import logging

from mofi.settings import Settings
from mofi_platform.services.embedder.models import ModelHolder
from mofi_platform.services.embedder.vectors import VectorStore
from mofi_platform.training.inference import EmbeddingModel

__all__ = ["load_holder", "model_loader", "open_vectors"]

log = logging.getLogger(__name__)


def load_holder(settings: Settings, checkpoint: str | None = None) -> ModelHolder:
    """The model at ``checkpoint`` (default ``settings.embedder.checkpoint``), reloadable from any URI."""
    uri = checkpoint or settings.embedder.checkpoint
    log.info("loading embedder model from %s", uri)
    return ModelHolder(EmbeddingModel.load(uri, settings.s3), loader=model_loader(settings), uri=uri)


def model_loader(settings: Settings):
    """URI -> EmbeddingModel, reading s3:// URIs with ``settings.s3``."""
    return lambda uri: EmbeddingModel.load(uri, settings.s3)


def open_vectors(settings: Settings) -> VectorStore:
    """The collections behind ``milvus.collection``; new versions get ``milvus.index_type`` and its params."""
    cfg = settings.milvus
    return VectorStore(
        cfg.uri,
        cfg.collection,
        token=cfg.token,
        index_type=cfg.index_type,
        index_params=cfg.index_params_dict(),
        search_params=cfg.search_params_dict(),
    )
