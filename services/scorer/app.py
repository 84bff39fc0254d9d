"""Process entry points of the scorer: the gRPC service (`mofi serve scorer`) and the Kafka stage
(`mofi stage scorer`). Both load the model named by ``settings.scorer.checkpoint``."""

from __future__ import annotations

import functools
import itertools
import json
import logging
from pathlib import Path

from mofi.objstore import ObjectStore
from mofi.settings import Settings
from mofi.v1 import scorer_pb2_grpc
from mofi_platform.services.common.batching import DynamicBatcher
from mofi_platform.services.common.entity_vectors import MAX_TOKENS, EntityVectors, kb_path, settings_vectors_path
from mofi_platform.services.common.images import ImageDecoder
from mofi_platform.services.common.process import (
    configure_logging,
    one_torch_thread,
    run_stage_until_signalled,
    serve_until_signalled,
)
from mofi_platform.services.common.server import serve
from mofi_platform.services.common.stage import KafkaStage
from mofi_platform.services.scorer.candidates import CandidateScorer
from mofi_platform.services.scorer.scoring import ClipScorer, entity_text
from mofi_platform.services.scorer.service import SERVICE_NAME, ClipScorerService
from mofi_platform.services.scorer.stage import CandidateHandler, scorer_stage
from mofi_platform.services.scorer.text_table import projected_table
from mofi_platform.services.scorer.tuning import tune_for_cpu
from mofi_platform.training.inference import EmbeddingModel

__all__ = [
    "image_decoder",
    "load_model",
    "load_scorer",
    "build_server",
    "candidate_scorer",
    "build_stage",
    "serve_main",
    "stage_main",
]

log = logging.getLogger(__name__)


def load_model(settings: Settings, checkpoint: str | None = None, tune: bool = True) -> EmbeddingModel:
    """Any open_clip model saved as a checkpoint (``mofi_platform.training.checkpoint``), local path or s3:// URI.

    ``tune``: fold the image tower's BatchNorm layers and run it channels-last
    (:mod:`mofi_platform.services.scorer.tuning`; checked to give the same embeddings, else left as loaded).
    """
    uri = checkpoint or settings.scorer.checkpoint
    log.info("loading scorer model from %s", uri)
    model = EmbeddingModel.load(uri, settings.s3)
    if tune:
        tune_for_cpu(model)
    return model


def image_decoder(settings: Settings) -> ImageDecoder:
    """The scorer's caps on images."""
    return ImageDecoder.of(settings.scorer, settings.data.max_pixels)


def build_server(settings: Settings, scorer: ClipScorer, port: int | None = None):
    """The running gRPC server (health, reflection, metrics) around one scorer and its batcher."""
    cfg = settings.scorer
    batcher = DynamicBatcher(scorer.score_many, max_batch=cfg.max_batch, max_wait_ms=cfg.max_wait_ms)
    service = ClipScorerService(scorer, batcher, image_decoder(settings), cfg.max_text_chars)
    return serve(
        [(scorer_pb2_grpc.add_ClipScorerServicer_to_server, service)],
        [SERVICE_NAME],
        cfg.port if port is None else port,
        settings.grpc,
    )


def load_scorer(settings: Settings, model: EmbeddingModel | None = None) -> ClipScorer:
    """The scorer around ``model`` (default: :func:`load_model`), with the entity-vector table beside the
    knowledge base when there is one and it agrees with the model's text tower
    (:mod:`mofi_platform.services.scorer.text_table`)."""
    model = model or load_model(settings)
    path = settings_vectors_path(settings)
    table = EntityVectors.load(path) if path.is_file() else None
    samples: list[str] = []
    kb = Path(kb_path(settings))
    if table is not None and kb.is_file():
        with kb.open() as f:
            for line in itertools.islice(f, 64):
                e = json.loads(line)
                samples.append(entity_text(e["name"], e.get("description", "")))
    return ClipScorer(model, text_table=projected_table(model, table, MAX_TOKENS, samples))


def candidate_scorer(settings: Settings, scorer: ClipScorer, store: ObjectStore) -> CandidateScorer:
    """The stage's core (candidate pairs -> verdicts) under the scorer's settings."""
    cfg = settings.scorer
    fetch = functools.partial(store.get_bytes, max_bytes=cfg.max_image_bytes)
    return CandidateScorer(scorer, cfg.threshold, fetch, image_decoder(settings), cfg.max_text_chars)


def build_stage(
    settings: Settings, scorer: ClipScorer, store: ObjectStore | None = None
) -> tuple[KafkaStage, CandidateHandler]:
    """The scorer's Kafka stage and its handler (whose ``counts`` say what became of each pair)."""
    store = store or ObjectStore(settings.s3)
    return scorer_stage(settings, candidate_scorer(settings, scorer, store), store)


def serve_main(settings: Settings) -> None:
    configure_logging()
    one_torch_thread()
    server = build_server(settings, load_scorer(settings))
    log.info("ClipScorer serving on port %s", server.port)
    serve_until_signalled(server, settings.grpc.grace_s)


def stage_main(settings: Settings) -> None:
    configure_logging()
    one_torch_thread()
    stage, handler = build_stage(settings, load_scorer(settings))
    run_stage_until_signalled(stage, settings.grpc.metrics_port)
    log.info("scorer stage stopped: %s", handler.counts)
