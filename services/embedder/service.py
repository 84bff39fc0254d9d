"""gRPC ``mofi.v1.Embedder`` and ``mofi.v1.Search`` over one model holder and one vector store.

Every input goes through the shared dynamic batcher, so concurrent callers share forward passes.
Bad input is the caller's error: INVALID_ARGUMENT (or NOT_FOUND for an unknown collection) with a
reason, checked before anything occupies the model. A caller's deadline bounds its wait.

Search embeds a text or image query with the model that built the collection it searches (recorded by the
collection), so a query is never compared with vectors of another model; when that model cannot be had the
call fails with FAILED_PRECONDITION and says why. Before any model is loaded, Embed calls fail with
UNAVAILABLE (the server starts anyway and reports its Embedder service NOT_SERVING).
"""

from __future__ import annotations

import logging
import math
import queue
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import grpc
import numpy as np

from mofi.v1 import embedder_pb2, embedder_pb2_grpc
from mofi_platform.services.common.deadline import result_within_deadline
from mofi_platform.services.common.errors import InvalidInput
from mofi_platform.services.common.images import ImageDecoder, RequestBudget
from mofi_platform.services.common.texts import validate_text
from mofi_platform.services.embedder.models import IMAGE, TEXT, Embedded, ModelHolder, ModelUnavailable
from mofi_platform.services.embedder.vectors import BadQuery, UnknownCollection, VectorStore

__all__ = ["EmbedderService", "SearchService", "Limits", "EMBEDDER_SERVICE", "SEARCH_SERVICE", "DEFAULT_TOP_K"]

log = logging.getLogger(__name__)

EMBEDDER_SERVICE = embedder_pb2.DESCRIPTOR.services_by_name["Embedder"].full_name
SEARCH_SERVICE = embedder_pb2.DESCRIPTOR.services_by_name["Search"].full_name
DEFAULT_TOP_K = 10
#: A request whose items straddle a hot reload is embedded again so all its vectors share one version.
VERSION_RETRIES = 3


class Limits:
    """Per-request caps taken from ``settings.embedder``; ``decoder`` holds the image caps."""

    def __init__(self, decoder: ImageDecoder, max_top_k: int, max_items: int = 1024, max_text_chars: int = 2000):
        self.decoder = decoder
        self.max_top_k = max_top_k
        self.max_items = max_items
        self.max_text_chars = max_text_chars

    def image(self, data: bytes, image_size: int, request: RequestBudget | None = None):
        return self.decoder.decode(data, image_size, request)

    def text(self, text: str) -> str:
        return validate_text(text, self.max_text_chars)


class _Embedding:
    """Shared by both services: validated items -> batcher futures -> vectors within the deadline."""

    def __init__(self, holder: ModelHolder, batcher, limits: Limits):
        self.holder = holder
        self.batcher = batcher
        self.limits = limits

    def item(self, kind: str, value: Any, request: RequestBudget | None = None) -> tuple[str, Any]:
        """A validated item; an image is decoded for the current model's input size, within ``request``."""
        if kind == IMAGE:
            return IMAGE, self.limits.image(value, self.holder.model.image_size, request)
        return TEXT, self.limits.text(value)

    def embed(self, items: Sequence[tuple[Any, ...]], context: grpc.ServicerContext) -> list[Embedded]:
        if not self.holder.loaded and any(len(it) < 3 for it in items):
            context.abort(grpc.StatusCode.UNAVAILABLE, "no embedding model is loaded yet: see the server log")
        for _ in range(VERSION_RETRIES):
            futures = [self.batcher.submit(it) for it in items]
            out = [result_within_deadline(f, context) for f in futures]
            if len({e.version for e in out}) <= 1:
                return out
        context.abort(grpc.StatusCode.UNAVAILABLE, "model reloaded repeatedly during the request; retry")


def _invalid(context: grpc.ServicerContext, reason: str) -> None:
    context.abort(grpc.StatusCode.INVALID_ARGUMENT, reason)


def _response(embedded: list[Embedded]) -> embedder_pb2.EmbedResponse:
    return embedder_pb2.EmbedResponse(
        embeddings=[embedder_pb2.Embedding(values=e.vector.tolist()) for e in embedded],
        model_version=embedded[0].version,
    )


class EmbedderService(embedder_pb2_grpc.EmbedderServicer):
    def __init__(self, holder: ModelHolder, batcher, limits: Limits):
        self.core = _Embedding(holder, batcher, limits)

    def _batch(self, kind: str, values: Sequence[Any], context: grpc.ServicerContext) -> embedder_pb2.EmbedResponse:
        if not values:
            _invalid(context, f"no {kind}s in the request")
        if len(values) > self.core.limits.max_items:
            _invalid(context, f"{len(values)} {kind}s; at most {self.core.limits.max_items} per request")
        items = []
        request = self.core.limits.decoder.request()  # the images of one call share its decode budget
        for i, v in enumerate(values):
            try:
                items.append(self.core.item(kind, v, request))
            except InvalidInput as e:
                _invalid(context, f"{kind} {i}: {e.reason}")
        return _response(self.core.embed(items, context))

    def EmbedImages(self, request, context):
        return self._batch(IMAGE, list(request.images), context)

    def EmbedTexts(self, request, context):
        return self._batch(TEXT, list(request.texts), context)

    def EmbedStream(self, request_iterator, context) -> Iterator[embedder_pb2.EmbedItemResult]:
        """Results in request order; items are submitted as they arrive, so a stream pipelines."""
        pending: queue.Queue = queue.Queue(maxsize=self.core.limits.max_items)

        def read() -> None:
            try:
                for req in request_iterator:
                    kind = req.WhichOneof("input")
                    if kind is None:
                        raise InvalidInput(f"item {req.request_id!r} has neither image nor text")
                    try:
                        item = self.core.item(kind, getattr(req, kind))
                    except InvalidInput as e:
                        raise InvalidInput(f"item {req.request_id!r}: {e.reason}") from None
                    pending.put((req.request_id, self.core.batcher.submit(item)))
                pending.put(None)
            except Exception as e:  # invalid item, or the client went away
                pending.put(e)

        threading.Thread(target=read, name="embed-stream-reader", daemon=True).start()
        while True:
            entry = pending.get()
            if entry is None:
                return
            if isinstance(entry, InvalidInput):
                _invalid(context, entry.reason)
            if isinstance(entry, Exception):
                log.info("stream ended: %s", entry)
                return
            request_id, fut = entry
            e = result_within_deadline(fut, context)
            yield embedder_pb2.EmbedItemResult(
                request_id=request_id,
                model_version=e.version,
                embedding=embedder_pb2.Embedding(values=e.vector.tolist()),
            )


class SearchService(embedder_pb2_grpc.SearchServicer):
    def __init__(self, holder: ModelHolder, batcher, limits: Limits, vectors: VectorStore):
        self.core = _Embedding(holder, batcher, limits)
        self.vectors = vectors

    def _query_vector(self, request, context, collection: str) -> tuple[np.ndarray, str]:
        which = request.WhichOneof("query")
        if which is None:
            _invalid(context, "missing query: set text, image or vector")
        if which == "vector":
            values = np.asarray(request.vector.values, dtype=np.float32)
            if values.size == 0:
                _invalid(context, "empty query vector")
            norm = float(np.linalg.norm(values))
            if not math.isfinite(norm) or norm == 0.0:
                _invalid(context, "query vector must be finite and non-zero")
            return values / norm, ""
        try:
            item = self.core.item(IMAGE if which == "image" else TEXT, getattr(request, which))
        except InvalidInput as e:
            _invalid(context, f"{which} query: {e.reason}")
        version, checkpoint = self.vectors.built_by(collection)
        if version:  # embed with the collection's own model
            try:
                item = (*item, self.core.holder.model_for(version, checkpoint))
            except ModelUnavailable as e:
                context.abort(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    f"collection {collection} was built by model {version!r}, which this server cannot use: {e}",
                )
        (e,) = self.core.embed([item], context)
        return e.vector, e.version

    def Search(self, request, context) -> embedder_pb2.SearchResponse:
        k = request.top_k or DEFAULT_TOP_K
        if k < 0:
            _invalid(context, f"top_k must be positive, got {k}")
        if k > self.core.limits.max_top_k:
            _invalid(context, f"top_k {k} exceeds the limit of {self.core.limits.max_top_k}")
        try:  # resolved once: the alias may move while this call runs, the query model moves with it
            collection = self.vectors.resolve(request.collection or self.vectors.alias)
        except UnknownCollection as e:
            context.abort(grpc.StatusCode.NOT_FOUND, str(e))
        vector, version = self._query_vector(request, context, collection)
        try:
            concrete, hits = self.vectors.search(vector, k, collection, request.entity_id, request.source)
        except UnknownCollection as e:
            context.abort(grpc.StatusCode.NOT_FOUND, str(e))
        except BadQuery as e:
            _invalid(context, str(e))
        return embedder_pb2.SearchResponse(
            collection=concrete,
            model_version=version or (hits[0].model_version if hits else ""),
            hits=[
                embedder_pb2.SearchHit(
                    pair_id=h.pair_id,
                    score=h.score,
                    entity_ids=h.entity_ids,
                    entity_names=h.entity_names,
                    source=h.source,
                    text=h.text,
                )
                for h in hits
            ],
        )
