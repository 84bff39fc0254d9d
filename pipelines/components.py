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
    import hashlib
    import json

    from mofi_platform.pipelines.steps import TrainJob, launch_training, step_settings

    snapshot = dataset.metadata["uri"]
    options = {
        "model": model_config,
        "recipe": recipe,
        "steps": steps,
        "batch_size": batch_size,
        **json.loads(train_options or "{}"),
    }
    digest = hashlib.sha1(json.dumps(options, sort_keys=True).encode()).hexdigest()[:8]  # other options: a new run
    run_name = run_name or f"{dataset.metadata['version']}-{model_config}-{recipe}-{digest}"
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
    model: Input[Model],
    benchmark: str,
    gate: str,
    min_gain: float,
    min_map: float,
    metrics: Output[Metrics],
    results: Output[Artifact],
) -> bool:
    """Retrieval mAP (overall, per domain, seen/unseen classes), zero-shot and linear probe beside the frozen
    baseline, chance and the published model; returns the quality gate's verdict (whether it passed)."""
    import json

    from mofi_platform.pipelines.steps import evaluate_checkpoint, step_settings

    out = evaluate_checkpoint(step_settings(), model.metadata["checkpoint"], benchmark, gate, min_gain, min_map)
    values = {
        "map": out["map"],
        **{f"map_{domain}": value for domain, value in out["map_per_domain"].items()},
        "map_seen": out.get("map_seen"),
        "map_unseen": out.get("map_unseen"),
        "seen_classes": len(out.get("seen_classes") or []),
        "unseen_classes": len(out.get("unseen_classes") or []),
        "baseline_map": out["baseline"]["map"],
        "chance_map": out["chance"]["map"],
        "published_map": (out.get("published") or {}).get("map"),
        "linear_probe_top1": out["linear_probe_top1"],
        "zero_shot_top1": out["zero_shot_top1"],
        "class_loss_chance": (out.get("class_loss_chance") or {}).get("value"),
        "gate_passed": float(out["gate"]["passed"]),
    }
    for name, value in values.items():
        if value is not None:
            metrics.log_metric(name, value)
    with open(results.path, "w") as f:
        json.dump(out, f, indent=2)
    print(json.dumps(out, indent=2))
    return bool(out["gate"]["passed"])


def gate_failed(results: Input[Artifact]):
    """Fail the run with the quality gate's numbers (the model was neither indexed nor rolled)."""
    import json

    from mofi_platform.pipelines.steps import QualityGateFailed

    with open(results.path) as f:
        out = json.load(f)
    gate = out["gate"]
    raise QualityGateFailed(
        f"{out['checkpoint']} failed the quality gate against {', '.join(gate['against']) or 'the floor'}: "
        + "; ".join(gate["failures"])
    )


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


COMPONENT_FUNCTIONS = (snapshot_i2e, train_mofi, evaluate_mofi, gate_failed, index_milvus, roll_embedder)


def make_components(image: str) -> dict[str, dsl.component]:
    """The components, running in ``image``: name -> KFP component."""
    return {fn.__name__: dsl.component(fn, base_image=image, install_kfp_package=False) for fn in COMPONENT_FUNCTIONS}
