"""Process entry point of the writer stage (`mofi stage writer`)."""

from __future__ import annotations

import logging

from mofi.settings import Settings
from mofi_platform.services.common.process import configure_logging, run_stage_until_signalled
from mofi_platform.services.writer.stage import WriterStage

__all__ = ["stage_main"]

log = logging.getLogger(__name__)


def stage_main(settings: Settings) -> None:
    """Run the writer until SIGTERM/SIGINT; partial shards are flushed before exit."""
    configure_logging()
    stats = run_stage_until_signalled(WriterStage(settings), settings.grpc.metrics_port)
    log.info("writer stopped: %d shards, %s", stats.shards, dict(stats.outcomes))
