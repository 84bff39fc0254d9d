"""Process entry points: ``mofi serve embedder`` (gRPC Embedder + Search) and ``mofi stage indexer``.

Hot reload: SIGHUP makes a running server load ``settings.embedder.checkpoint`` again (point the
setting's object at new weights, or restart with a new URI) and swap to it once loaded; calls in
flight finish on the old model and none is dropped.
"""

from __future__ import annotations

import functools
import logging
import signal
import threading
from dataclasses import dataclass

from mofi.objstore import ObjectStore
from mofi.settings import Settings
from mofi.v1 import embedder_pb2_grpc
from mofi_platform.services.common.batching import DynamicBatcher
from mofi_platform.services.common.images import ImageDecoder, decode_image
from mofi_platform.services.common.process import configure_logging, run_stage_until_signalled, serve_until_signalled
from mofi_platform.services.common.server import RunningServer, serve
from mofi_platform.services.embedder.models import ModelHolder
from mofi_platform.services.embedder.resources import load_holder, open_vectors
from mofi_platform.services.embedder.service import (
    EMBEDDER_SERVICE,
    SEARCH_SERVICE,
    EmbedderService,
    Limits,
    SearchService,
)
from mofi_platform.services.embedder.stage import IndexerHandler, build_indexer_stage
from mofi_platform.services.embedder.vectors import VectorStore

__all__ = ["EmbedderServer", "build_server", "serve_main", "stage_main"]

log = logging.getLogger(__name__)


def limits_of(settings: Settings) -> Limits:
    """The embedder's caps."""
    cfg = settings.embedder
    return Limits(ImageDecoder.of(cfg, cfg.max_pixels), cfg.max_top_k, max_text_chars=cfg.max_text_chars)


@dataclass
class EmbedderServer:
    """The running server with what it owns; :meth:`stop` drains calls, then the batcher."""

    server: RunningServer
    holder: ModelHolder
    batcher: DynamicBatcher
    vectors: VectorStore

    @property
    def port(self) -> int:
        return self.server.port

    def stop(self, grace: float | None = None) -> None:
        self.server.stop(grace)
        self.batcher.close()


def build_server(
    settings: Settings, holder: ModelHolder, vectors: VectorStore, port: int | None = None
) -> EmbedderServer:
    cfg = settings.embedder
    batcher = DynamicBatcher(holder.embed_batch, max_batch=cfg.max_batch, max_wait_ms=cfg.max_wait_ms, name="embedder")
    limits = limits_of(settings)
    running = serve(
        [
            (embedder_pb2_grpc.add_EmbedderServicer_to_server, EmbedderService(holder, batcher, limits)),
            (embedder_pb2_grpc.add_SearchServicer_to_server, SearchService(holder, batcher, limits, vectors)),
        ],
        [EMBEDDER_SERVICE, SEARCH_SERVICE],
        cfg.port if port is None else port,
        settings.grpc,
    )
    return EmbedderServer(running, holder, batcher, vectors)


def _reload_on_sighup(holder: ModelHolder, uri: str) -> None:
    def reload() -> None:
        try:
            log.info("reloaded: now serving %s", holder.reload(uri))
        except Exception:
            log.exception("reload from %s failed; still serving %s", uri, holder.version)

    signal.signal(signal.SIGHUP, lambda *_: threading.Thread(target=reload, name="reload", daemon=True).start())


def serve_main(settings: Settings) -> None:
    configure_logging()
    holder = load_holder(settings)
    running = build_server(settings, holder, open_vectors(settings))
    _reload_on_sighup(holder, settings.embedder.checkpoint)
    log.info("Embedder and Search serving on port %s (model %s)", running.port, holder.version)
    serve_until_signalled(running, settings.grpc.grace_s)


def stage_main(settings: Settings) -> None:
    configure_logging()
    cfg = settings.embedder
    store = ObjectStore(settings.s3)
    handler = IndexerHandler(
        load_holder(settings),
        open_vectors(settings),
        functools.partial(store.get_bytes, max_bytes=cfg.max_image_bytes),
        lambda b: decode_image(b, cfg.max_image_bytes, cfg.max_pixels),
        cfg.max_image_bytes,
    )
    run_stage_until_signalled(build_indexer_stage(settings, handler), settings.grpc.metrics_port)
