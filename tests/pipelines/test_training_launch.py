"""The training step owns its torchx job: run for real with torchx's ``local_cwd`` scheduler, a job that fails
is reported with its logs, a job past its deadline and a step that gets SIGTERM leave no job running, and a
rerun of a run cancels the job an earlier attempt left behind. The Kubernetes request (Volcano job) is
checked by dry run: GPU jobs train with device=cuda, pods are restricted and carry the settings' placement."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torchx import specs
from torchx.runner import get_runner
from torchx.specs import AppState

from mofi.objstore import ObjectStore, join_uri
from mofi_platform.pipelines.steps import (
    RESTRICTED_CONTAINER,
    RESTRICTED_POD,
    TrainingFailed,
    TrainJob,
    launch_training,
    plan_training,
    train_app,
    train_config,
)
from mofi_platform.training.trainer import train_device

OPTIONS = {"model": "mofi-tiny-vit", "steps": 2, "batch_size": 2, "pretrained_towers": False}
LOCAL = TrainJob(scheduler="local_cwd", nproc_per_node=1, poll_s=0.2)


def _missing_snapshot(settings) -> str:
    return f"s3://{settings.s3.i2e_bucket}/snapshots/missing/manifest.json"


def _lock(settings, run_name: str) -> str:
    return join_uri(train_config(settings, _missing_snapshot(settings), run_name, OPTIONS).run_dir, "job.json")


def _job_handle(lines: list[str]) -> str:
    return next(line.split()[-1] for line in lines if line.startswith("torchx job "))


@pytest.mark.slow
def test_a_failing_job_fails_the_step_with_its_last_log_lines(settings):
    lines: list[str] = []
    with pytest.raises(TrainingFailed, match="ended FAILED") as failed:
        launch_training(settings, _missing_snapshot(settings), "fails", OPTIONS, LOCAL, on_log=lines.append)
    assert any("missing/manifest.json" in line for line in lines), lines  # the trainer's own error, from its log
    assert lines[-1] in str(failed.value)  # the last lines come with the failure
    assert not ObjectStore(settings.s3).exists(_lock(settings, "fails"))


@pytest.mark.slow
def test_a_job_past_its_deadline_is_cancelled(settings):
    settings.training.job_timeout_s = 1.0  # the job is still importing torch by then
    lines: list[str] = []
    runner = get_runner()
    try:
        with pytest.raises(TrainingFailed, match="did not finish within training.job_timeout_s=1"):
            launch_training(
                settings, _missing_snapshot(settings), "slow", OPTIONS, LOCAL, on_log=lines.append, runner=runner
            )
        assert runner.status(_job_handle(lines)).state == AppState.CANCELLED
    finally:
        runner.close()
    assert any(line.startswith("cancelling torchx job") for line in lines)


@pytest.mark.slow
def test_a_rerun_cancels_the_job_an_earlier_attempt_left_running(settings):
    store = ObjectStore(settings.s3)
    runner = get_runner()
    try:
        orphan = runner.run(
            specs.AppDef("orphan", roles=[specs.Role("train", image="", entrypoint="sleep", args=["300"])]),
            scheduler="local_cwd",
        )
        assert runner.status(orphan).state == AppState.RUNNING
        store.put_bytes(_lock(settings, "rerun"), json.dumps({"job": orphan}).encode())
        lines: list[str] = []
        with pytest.raises(TrainingFailed, match="ended FAILED"):
            launch_training(
                settings, _missing_snapshot(settings), "rerun", OPTIONS, LOCAL, on_log=lines.append, runner=runner
            )
        assert runner.status(orphan).state == AppState.CANCELLED
    finally:
        runner.close()
    assert f"cancelling torchx job {orphan} left running by an earlier attempt of this run" in lines
    assert not store.exists(_lock(settings, "rerun"))


def _descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited meanwhile
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


STEP = """
import sys
from mofi.settings import load_settings
from mofi_platform.pipelines.steps import TrainJob, launch_training
opts = {"model": "mofi-tiny-vit", "steps": 500, "batch_size": 2, "pretrained_towers": False}
launch_training(load_settings(), sys.argv[1], "terminated", opts, TrainJob(scheduler="local_cwd", nproc_per_node=1,
                poll_s=0.2), on_log=lambda line: print(line, flush=True))
"""


@pytest.mark.slow
def test_a_step_that_gets_sigterm_cancels_its_job(settings):
    env = {**os.environ, **settings.to_env(), "HF_HUB_OFFLINE": "1"}
    step = subprocess.Popen(
        [sys.executable, "-c", STEP, _missing_snapshot(settings)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        lines = []
        deadline = time.monotonic() + 120
        while not any(line.startswith("torchx job ") for line in lines):
            assert time.monotonic() < deadline and step.poll() is None, lines
            lines.append(step.stdout.readline().strip())
        job_processes = set()
        while not job_processes:  # the job's torchrun (and its rank) under the step
            job_processes = _descendants(step.pid)
            time.sleep(0.05)
        step.send_signal(signal.SIGTERM)
        out, _ = step.communicate(timeout=120)
    finally:
        step.kill()
    assert step.returncode != 0
    assert "cancelling torchx job" in out and "StepTerminated: the training step got signal SIGTERM" in out
    assert not [pid for pid in job_processes if _alive(pid)], "the job outlived its step"


def _request(settings, job: TrainJob, options=OPTIONS):
    app = train_app(settings, "s3://b/snapshots/v/manifest.json", "prod", options, job)
    runner = get_runner()
    try:
        return app, plan_training(runner, app, job, settings.training).request.resource
    finally:
        runner.close()


def test_volcano_pods_are_restricted_and_placed_by_the_settings(settings):
    settings.training.job_tolerations = json.dumps(
        [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    )
    settings.training.job_node_selector = json.dumps({"nvidia.com/gpu.present": "true"})
    settings.training.job_image_pull_secrets = "registry-a, registry-b"
    job = TrainJob(scheduler="kubernetes", nnodes=2, nproc_per_node=1, image="registry/mofi:1", gpu=1, namespace="ns")
    app, request = _request(settings, job)
    assert "--device cuda" in " ".join(app.roles[0].args)  # a GPU job never falls back to the CPU
    for task in request["spec"]["tasks"]:
        pod = task["template"].spec
        assert [(t.key, t.operator, t.effect) for t in pod.tolerations] == [("nvidia.com/gpu", "Exists", "NoSchedule")]
        assert pod.node_selector["nvidia.com/gpu.present"] == "true"
        assert [s.name for s in pod.image_pull_secrets] == ["registry-a", "registry-b"]
        assert pod.security_context.run_as_non_root and pod.security_context.seccomp_profile.type == "RuntimeDefault"
        container = pod.containers[0]
        assert container.resources.limits["nvidia.com/gpu"] == "1"
        ctx = container.security_context
        assert ctx.allow_privilege_escalation is False and ctx.capabilities.drop == ["ALL"] and ctx.run_as_non_root
    assert RESTRICTED_POD["runAsNonRoot"] and RESTRICTED_CONTAINER["capabilities"] == {"drop": ["ALL"]}


def test_a_gpu_job_refuses_the_cpu_device(settings):
    job = TrainJob(scheduler="kubernetes", gpu=1, namespace="ns")
    with pytest.raises(ValueError, match="a GPU job trains with device=cuda"):
        _request(settings, job, {**OPTIONS, "device": "cpu"})


def test_bad_placement_settings_fail_before_any_job(settings):
    settings.training.job_tolerations = '{"key": "not-a-list"}'
    with pytest.raises(ValueError, match="training.job_tolerations: expected a JSON list"):
        _request(settings, TrainJob(scheduler="kubernetes", namespace="ns"))


def test_device_cuda_never_falls_back_to_the_cpu():
    if torch.cuda.is_available():
        assert train_device("cuda", 0).type == "cuda"
    else:
        with pytest.raises(RuntimeError, match="device=cuda but"):
            train_device("cuda", 0)
        assert train_device("auto", 0).type == "cpu"
    with pytest.raises(ValueError, match="one of auto, cuda, cpu"):
        train_device("gpu", 0)
