"""Process entry points: ``mofi serve embedder`` (gRPC Embedder + Search) and ``mofi stage indexer``.

Hot reload: SIGHUP makes a running server load ``settings.embedder.checkpoint`` again (point the
setting's object at new weights, or restart with a new URI) and swap to it once loaded; calls in
flight finish on the old model and none is dropped.

No model yet: a fresh install has no checkpoint until the pipeline trains one. The server starts anyway,
reports ``mofi.v1.Embedder`` NOT_SERVING (``mofi.v1.Search`` serves: vector queries, and collections load
the model they record), logs what it waits for, and loads the checkpoint once it appears
(:func:`load_until_loaded`), so ``helm install --wait`` succeeds and nothing crash-loops.
"""

from __future__ import annotations

import functools
import logging
import signal
import threading
import time
from dataclasses import dataclass

from grpc_health.v1 import health_pb2

from mofi.objstore import ObjectStore
from mofi.settings import Settings
from mofi.v1 import embedder_pb2_grpc
from mofi_platform.services.common.batching import DynamicBatcher
from mofi_platform.services.common.images import ImageDecoder, decode_image
from mofi_platform.services.common.process import configure_logging, run_stage_until_signalled, serve_until_signalled
from mofi_platform.services.common.server import RunningServer, serve
from mofi_platform.services.embedder.models import ModelHolder
from mofi_platform.services.embedder.resources import load_holder, model_loader, open_vectors
from mofi_platform.services.embedder.service import (
    EMBEDDER_SERVICE,
    SEARCH_SERVICE,
    EmbedderService,
    Limits,
    SearchService,
)
from mofi_platform.services.embedder.stage import IndexerHandler, build_indexer_stage
from mofi_platform.services.embedder.vectors import VectorStore

__all__ = ["EmbedderServer", "build_server", "load_until_loaded", "serve_main", "stage_main", "LOAD_RETRY_S"]

log = logging.getLogger(__name__)

#: Seconds between attempts to load the pinned checkpoint while it cannot be loaded.
LOAD_RETRY_S = 15.0


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
            log.exception("reload from %s failed; still serving %s", uri, holder.uri or "no model")

    signal.signal(signal.SIGHUP, lambda *_: threading.Thread(target=reload, name="reload", daemon=True).start())


def load_until_loaded(
    holder: ModelHolder, uri: str, server: RunningServer, retry_s: float = LOAD_RETRY_S
) -> threading.Thread:
    """Load ``uri`` into ``holder`` in the background, retrying every ``retry_s`` s; the Embedder service is
    NOT_SERVING until the model is loaded, then SERVING."""
    server.health.set(EMBEDDER_SERVICE, health_pb2.HealthCheckResponse.NOT_SERVING)

    def load() -> None:
        attempt = 0
        while not holder.loaded:
            try:
                holder.reload(uri)
            except Exception as e:
                if attempt == 0:
                    log.warning(
                        "NOT_SERVING: no embedding model yet: settings.embedder.checkpoint=%s cannot be loaded (%s). "
                        "Train one with the pipeline or point the setting at a checkpoint; retrying every %.0f s",
                        uri,
                        e,
                        retry_s,
                    )
                attempt += 1
                time.sleep(retry_s)
        server.health.set(EMBEDDER_SERVICE, health_pb2.HealthCheckResponse.SERVING)
        log.info("SERVING: embedding model %s loaded from %s", holder.version, uri)

    thread = threading.Thread(target=load, name="load-model", daemon=True)
    thread.start()
    return thread


def serve_main(settings: Settings) -> None:
    configure_logging()
    uri = settings.embedder.checkpoint
    holder = ModelHolder(None, loader=model_loader(settings))
    running = build_server(settings, holder, open_vectors(settings))
    load_until_loaded(holder, uri, running.server)
    _reload_on_sighup(holder, uri)
    log.info("Embedder and Search serving on port %s", running.port)
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
