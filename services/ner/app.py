"""Process entry points: `mofi serve ner` (gRPC) and `mofi stage ner` (Kafka), one model each."""

from __future__ import annotations

import logging

from mofi.settings import Settings
from mofi.v1 import ner_pb2_grpc
from mofi_platform.services.common.batching import DynamicBatcher
from mofi_platform.services.common.process import (
    configure_logging,
    one_torch_thread,
    run_stage_until_signalled,
    serve_until_signalled,
)
from mofi_platform.services.common.server import RunningServer, serve
from mofi_platform.services.ner.extractor import Extractor
from mofi_platform.services.ner.service import SERVICE_NAME, EntityExtractorService
from mofi_platform.services.ner.stage import build_ner_stage

__all__ = ["build_server", "serve_main", "stage_main"]

log = logging.getLogger(__name__)


def build_server(settings: Settings, extractor: Extractor, port: int | None = None) -> RunningServer:
    cfg = settings.ner
    batcher = DynamicBatcher(extractor.extract, max_batch=cfg.max_batch, max_wait_ms=cfg.max_wait_ms, name="ner")
    service = EntityExtractorService(extractor, batcher)
    return serve(
        [(ner_pb2_grpc.add_EntityExtractorServicer_to_server, service)],
        [SERVICE_NAME],
        cfg.port if port is None else port,
        settings.grpc,
    )


def serve_main(settings: Settings) -> None:
    configure_logging()
    one_torch_thread()
    server = build_server(settings, Extractor.from_settings(settings))
    log.info("EntityExtractor serving on port %s", server.port)
    serve_until_signalled(server, settings.grpc.grace_s)


def stage_main(settings: Settings) -> None:
    configure_logging()
    one_torch_thread()
    run_stage_until_signalled(build_ner_stage(settings, Extractor.from_settings(settings)), settings.grpc.metrics_port)
