"""Run the pipeline on this machine with kfp.local: each step a subprocess, training via torchx local_cwd.

Why kfp.local rather than calling the steps directly: the local run goes through the same component
definitions, artifact passing and parameter types as a Kubeflow run, so what passes here is what
the cluster runs (less the ConfigMap/Secret wiring, replaced by this process's environment).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from mofi.settings import Settings

__all__ = ["LOCAL_DEFAULTS", "run_local"]

#: Parameters that differ locally from the cluster defaults: CPU, two local ranks, no roll of a Deployment.
LOCAL_DEFAULTS: dict[str, Any] = {
    "scheduler": "local_cwd",
    "nproc_per_node": 2,
    "gpu": 0,
    "cpu": 2,
    "roll": False,
    "embedder_deployment": "",
}


def run_local(settings: Settings, pipeline_root: str | Path, **params: Any) -> dict[str, Any]:
    """Run the whole pipeline here; returns the model (checkpoint metadata), metrics and evaluation results.

    The steps read their settings from the environment, so ``settings`` is exported to it first
    (child processes inherit it). Raises RuntimeError naming the failed step when one fails.
    """
    import kfp.local

    from mofi_platform.pipelines.pipeline import build_pipeline

    os.environ.update(settings.to_env())
    Path(pipeline_root).mkdir(parents=True, exist_ok=True)
    kfp.local.init(
        runner=kfp.local.SubprocessRunner(use_venv=False), pipeline_root=str(pipeline_root), raise_on_error=True
    )
    task = build_pipeline(cluster=False)(**{**LOCAL_DEFAULTS, **params})
    model, metrics, evaluation = task.outputs["model"], task.outputs["metrics"], task.outputs["evaluation"]
    return {
        "model": dict(model.metadata),
        "metrics": dict(metrics.metadata),
        "evaluation": json.loads(Path(evaluation.path).read_text()),
        "artifacts": {"model": model.uri, "metrics": metrics.uri, "evaluation": evaluation.uri},
    }
