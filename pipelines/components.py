"""KFP v2 lightweight components: one call each into :mod:`mofi_platform.pipelines.steps`.

Each function below is shipped as source to a pod running the mofi image (which has this package
and kfp installed, hence ``install_kfp_package=False``), so it imports what it needs inside its body.
Settings reach the pod as MOFI_* environment variables (the chart's ConfigMap and Secret, attached
in :mod:`mofi_platform.pipelines.pipeline`); locally they are inherited from the process that runs the pipeline.

No ``from __future__ import annotations`` here: KFP reads the artifact types from real annotations.
"""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output

__all__ = ["make_components", "COMPONENT_FUNCTIONS"]


def snapshot_i2e(version: str, min_count: int, val_percent: float, dataset: Output[Dataset]):
    """Freeze the complete I2E shards into a versioned snapshot (reused when the version exists)."""
    import json
    from dataclasses import asdict

    from mofi_platform.pipelines.steps import step_settings, take_snapshot

    info = take_snapshot(step_settings(), version, min_count, val_percent)
    dataset.metadata.update(asdict(info))
    with open(dataset.path, "w") as f:
        json.dump(asdict(info), f, indent=2)
    print(f"snapshot {info.uri}: {info.num_samples} samples, {info.num_classes} classes, {info.num_shards} shards")


def train_mofi(
    dataset: Input[Dataset],
    run_name: str,
    model_config: str,
    recipe: str,
    steps: int,
    batch_size: int,
    train_options: str,
    scheduler: str,
    nnodes: int,
    nproc_per_node: int,
    image: str,
    gpu: int,
    cpu: int,
    mem_mb: int,
    queue: str,
    credentials_secret: str,
    max_retries: int,
    model: Output[Model],
):
    """Run `mofi train` as a torchx job (kubernetes/Volcano or local_cwd), stream its logs, output the checkpoint."""
    import json

    from mofi_platform.pipelines.steps import TrainJob, launch_training, step_settings

    snapshot = dataset.metadata["uri"]
    run_name = run_name or f"{dataset.metadata['version']}-{model_config}-{recipe}"
    options = {
        "model": model_config,
        "recipe": recipe,
        "steps": steps,
        "batch_size": batch_size,
        **json.loads(train_options or "{}"),
    }
    job = TrainJob(
        scheduler=scheduler,
        nnodes=nnodes,
        nproc_per_node=nproc_per_node,
        image=image,
        cpu=cpu,
        gpu=gpu,
        memMB=mem_mb,
        queue=queue,
        credentials_secret=credentials_secret,
        max_retries=max_retries,
    )
    result = launch_training(step_settings(), snapshot, run_name, options, job)
    model.metadata.update({**result, "snapshot": snapshot, "run_name": run_name, **options})
    with open(model.path, "w") as f:
        json.dump(model.metadata, f, indent=2)
    print(f"checkpoint {result['checkpoint']} (step {result['step']})")


def evaluate_mofi(
    model: Input[Model], benchmark: str, min_map: float, metrics: Output[Metrics], results: Output[Artifact]
):
    """GPR1200-protocol retrieval mAP (overall and per domain), zero-shot and linear probe; fail below min_map."""
    import json

    from mofi_platform.pipelines.steps import evaluate_checkpoint, step_settings

    out = evaluate_checkpoint(step_settings(), model.metadata["checkpoint"], benchmark, min_map)
    metrics.log_metric("map", out["map"])
    for domain, value in out["map_per_domain"].items():
        metrics.log_metric(f"map_{domain}", value)
    metrics.log_metric("linear_probe_top1", out["linear_probe_top1"])
    if out["zero_shot_top1"] is not None:
        metrics.log_metric("zero_shot_top1", out["zero_shot_top1"])
    with open(results.path, "w") as f:
        json.dump(out, f, indent=2)
    print(json.dumps(out, indent=2))


def index_milvus(model: Input[Model], batch_size: int, thumbnails: bool) -> NamedTuple(
    "Index", collection=str, indexed=int
):
    """Embed every I2E image into a new Milvus collection and switch the search alias to it."""
    from mofi_platform.pipelines.steps import index_checkpoint, step_settings

    report = index_checkpoint(step_settings(), model.metadata["checkpoint"], batch_size, thumbnails)
    for pair_id, reason in report.skipped:
        print(f"skipped {pair_id}: {reason}")
    print(f"indexed {report.indexed} images into {report.collection} ({len(report.skipped)} skipped)")
    if report.indexed == 0:
        raise RuntimeError("no image was indexed")
    return (report.collection, report.indexed)


def roll_embedder(model: Input[Model], deployment: str, namespace: str) -> str:
    """Publish the checkpoint as the embedder's and roll the embedder Deployment (when one is named)."""
    from mofi_platform.pipelines.steps import roll_embedder as roll, step_settings

    version = roll(step_settings(), model.metadata["checkpoint"], deployment, namespace)
    print(f"embedder checkpoint is now {version}")
    return version


COMPONENT_FUNCTIONS = (snapshot_i2e, train_mofi, evaluate_mofi, index_milvus, roll_embedder)


def make_components(image: str) -> dict[str, dsl.component]:
    """The components, running in ``image``: name -> KFP component."""
    return {fn.__name__: dsl.component(fn, base_image=image, install_kfp_package=False) for fn in COMPONENT_FUNCTIONS}
