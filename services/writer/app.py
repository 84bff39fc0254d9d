"""Process entry point of the writer stage (`mofi stage writer`)."""

from __future__ import annotations

import logging
import signal

from mofi.settings import Settings
from services.writer.stage import WriterStage

__all__ = ["stage_main"]


def stage_main(settings: Settings) -> None:
    """Run the writer until SIGTERM/SIGINT; partial shards are flushed before exit."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    stage = WriterStage(settings)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stage.stop())
    stats = stage.run()
    logging.getLogger(__name__).info("writer stopped: %d shards, %s", stats.shards, dict(stats.outcomes))
