"""Running a service or stage as a pod's main process: log setup, SIGTERM/SIGINT handling, drain.

Why shared: Kubernetes stops a pod with SIGTERM and waits ``terminationGracePeriodSeconds``; every
server must then stop taking calls and drain, and every stage must finish its poll and commit.
"""

from __future__ import annotations

import logging
import signal
import threading
from typing import Any, Protocol

from mofi_platform.services.common.metrics import start_metrics_server

__all__ = [
    "configure_logging",
    "one_torch_thread",
    "until_signalled",
    "serve_until_signalled",
    "run_stage_until_signalled",
]

log = logging.getLogger(__name__)


def configure_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")


def one_torch_thread() -> None:
    """A model process (NER, scorer) runs one forward pass at a time: one torch thread per process, replicas
    for scale.

    Why: two intra-op threads on a node whose other core is busy (the NER or writer stage, another
    pod) spend their time waiting for each other at every layer; on 2 busy cores one thread scored
    images several times faster at batch 1 and no slower at 8-32 (benchmarks/scorer_throughput.py)."""
    import torch  # here, so that processes without a model (the writer) never load it

    torch.set_num_threads(1)


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


def run_stage_until_signalled(stage, metrics_port: int = 0) -> Any:
    """Run ``stage`` (``run()``, ``stop()``, ``close()``: a KafkaStage or alike) until SIGTERM/SIGINT.

    ``metrics_port`` (``settings.grpc.metrics_port``; 0: none) serves the process's Prometheus
    metrics on ``/metrics`` while the stage runs, as :func:`mofi_platform.services.common.server.serve` does for a
    server. Returns what ``stage.run()`` returned (the stage's counts).
    """
    done = until_signalled()
    if metrics_port:
        start_metrics_server(metrics_port)
        log.info("metrics on port %d", metrics_port)
    threading.Thread(target=lambda: (done.wait(), stage.stop()), daemon=True).start()
    try:
        return stage.run()
    finally:
        stage.close()
