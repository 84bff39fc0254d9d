"""`mofi demo [--quick]`: the whole system end to end on this machine, resumable, ending in an HTML report.

Steps: local stack -> data (fetch + build, or the committed fixture with --quick) -> CLIP scorer
bootstrap -> the NER, scorer and writer stages consume the corpus streamed through Kafka and write
I2E to S3 -> the Kubeflow pipeline runs locally (snapshot, torchx 2-process training, evaluation,
Milvus index, publish) -> example searches through the gRPC Search service -> report.

Modules: :mod:`.plans` (how big a run is, and the quick run's own settings), :mod:`.runner` (named
steps, the resumable state file, timings, skip-if-done), :mod:`.commands` (the `mofi` subprocesses
every step runs, so the demo exercises the real entry points), :mod:`.steps` (the steps and their
order), :mod:`.cli` (the command).
"""

from mofi_platform.pipelines.demo.cli import demo
from mofi_platform.pipelines.demo.commands import DemoError
from mofi_platform.pipelines.demo.plans import PLANS, DemoPlan
from mofi_platform.pipelines.demo.steps import Demo

__all__ = ["demo", "Demo", "DemoPlan", "DemoError", "PLANS"]
