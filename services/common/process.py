"""Running a service or stage as a pod's main process: log setup, SIGTERM/SIGINT handling, drain.

Why shared: Kubernetes stops a pod with SIGTERM and waits ``terminationGracePeriodSeconds``; every
server must then stop taking calls and drain, and every stage must finish its poll and commit.
"""

from __future__ import annotations

import logging
import signal
import threading
from typing import Protocol

__all__ = ["configure_logging", "until_signalled", "serve_until_signalled", "run_stage_until_signalled"]


def configure_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")


def until_signalled() -> threading.Event:
    """An event set by SIGTERM or SIGINT (main thread only)."""
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    return done


class _Stoppable(Protocol):
    def stop(self, grace: float | None = None) -> None: ...


def serve_until_signalled(server: _Stoppable, grace_s: float) -> None:
    """Block until SIGTERM/SIGINT, then ``server.stop(grace_s)`` (a RunningServer or a wrapper of one)."""
    until_signalled().wait()
    server.stop(grace_s)


def run_stage_until_signalled(stage) -> None:
    """``stage`` has ``run()``, ``stop()`` and ``close()`` (a KafkaStage or alike)."""
    done = until_signalled()
    threading.Thread(target=lambda: (done.wait(), stage.stop()), daemon=True).start()
    try:
        stage.run()
    finally:
        stage.close()
