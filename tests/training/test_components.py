"""The torchx component: a torchrun AppDef running `mofi train`, and the Volcano job it becomes."""

from __future__ import annotations

from torchx.runner import get_runner

from mofi_platform.training.components import train


def test_component_runs_mofi_train_under_torchrun():
    app = train(
        "--snapshot",
        "s3://b/snapshots/v/manifest.json",
        "--run-name",
        "r",
        j="1x2",
        env={"MOFI_S3_ENDPOINT": "minio:9000"},
    )
    role = app.roles[0]
    cmd = " ".join(role.args)
    assert role.name == "train" and "torchrun" in cmd and "--nproc_per_node 2" in cmd
    assert "-m mofi.cli train --snapshot s3://b/snapshots/v/manifest.json --run-name r" in cmd
    assert role.env["MOFI_S3_ENDPOINT"] == "minio:9000"


def test_kubernetes_dryrun_is_a_volcano_job_per_node():
    app = train(
        "--snapshot",
        "s3://b/s/manifest.json",
        "--run-name",
        "prod",
        image="registry/mofi:1",
        j="2x4",
        gpu=4,
        max_retries=2,
    )
    runner = get_runner()
    try:
        info = runner.dryrun(app, "kubernetes", cfg={"queue": "default", "namespace": "mofi", "validate_spec": False})
    finally:
        runner.close()
    job = info.request.resource
    assert job["kind"] == "Job" and job["apiVersion"] == "batch.volcano.sh/v1alpha1"
    assert job["spec"]["schedulerName"] == "volcano" and len(job["spec"]["tasks"]) == 2
    container = job["spec"]["tasks"][0]["template"].spec.containers[0]
    assert container.image == "registry/mofi:1" and container.resources.limits["nvidia.com/gpu"] == "4"
    assert "--nnodes 2 --nproc_per_node 4" in " ".join(container.command)


def test_component_is_registered_by_name_next_to_the_builtins():
    """pyproject's `torchx.components` entry points: `torchx run mofi.train` works, `dist.ddp` still does."""
    from torchx.specs.finder import get_components

    components = get_components()
    assert components["mofi.train"].fn is train
    assert {"dist.ddp", "utils.echo"} <= set(components)
