"""The KFP pipeline: compiled YAML is fresh and wired to the chart's ConfigMap/Secret; the Volcano job
gets credentials only from the Secret; the whole pipeline runs locally (kfp.local SubprocessRunner,
torchx local_cwd with 2 ranks) against the real S3 server and milvus-lite, and its quality gate stops
a bad model before indexing."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import kfp
import numpy as np
import pytest
import torch
import yaml
from torchx.runner import get_runner

from mofi import IMAGE
from mofi.i2e import write_shard
from mofi.objstore import ObjectStore
from mofi.settings import CREDENTIALS, Settings, env_name
from mofi_platform.pipelines.local import run_local
from mofi_platform.pipelines.pipeline import PIPELINE_FILE, TRAIN_RETRIES, TRAIN_STEP_TIMEOUT_S, compile_pipeline
from mofi_platform.pipelines.steps import TrainJob, evaluate_checkpoint, plan_training, train_app, train_config
from mofi_platform.services.embedder.vectors import VectorStore
from mofi_platform.training.checkpoint import load_checkpoint, save_checkpoint
from mofi_platform.training.config import config_argv
from mofi_platform.training.losses import LossConfig
from tests.training.conftest import make_samples

REPO = Path(__file__).resolve().parents[2]
BENCHMARK = REPO / "tests" / "fixtures" / "benchmark"
SECRET_ENV = {env_name(section, field) for section, field in CREDENTIALS}


def test_committed_pipeline_yaml_is_fresh(tmp_path):
    fresh = compile_pipeline(tmp_path / "p.yaml").read_text()
    assert PIPELINE_FILE.read_text() == fresh, "pipelines/mofi_train.yaml is stale: run `mofi pipeline compile`"


def test_compiled_pipeline_steps_take_settings_from_configmap_and_credentials_from_secret():
    docs = list(yaml.safe_load_all(PIPELINE_FILE.read_text()))
    spec, platform = docs[0], docs[1]
    dag = spec["root"]["dag"]["tasks"]
    assert {"snapshot-i2e", "train-mofi", "evaluate-mofi", "condition-1", "condition-3"} <= set(dag)
    # index and roll run only when the quality gate passed; otherwise gate-failed fails the run
    passed = spec["components"]["comp-condition-1"]["dag"]["tasks"]
    assert "index-milvus" in passed and "roll-embedder" in json.dumps(spec["components"]["comp-condition-2"])
    assert dag["condition-1"]["triggerPolicy"]["condition"].endswith(
        "['pipelinechannel--evaluate-mofi-Output'] == true"
    )
    assert "gate-failed" in spec["components"]["comp-condition-3"]["dag"]["tasks"]
    assert dag["condition-3"]["triggerPolicy"]["condition"].endswith("Output'] == false")
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert len(executors) == 6
    for name, ex in executors.items():
        cm_keys = {k["envVar"] for cm in ex["configMapAsEnv"] for k in cm["keyToEnv"]}
        assert "MOFI_S3_ENDPOINT" in cm_keys and "MOFI_EMBEDDER_CHECKPOINT" in cm_keys, name
        assert not cm_keys & SECRET_ENV, f"{name}: credentials must not come from the ConfigMap"
        assert not any(k.startswith("MOFI_STACK_") for k in cm_keys), name
        secret_keys = {k["envVar"] for s in ex["secretAsEnv"] for k in s["keyToEnv"]}
        assert secret_keys == SECRET_ENV, name
    images = {c["container"]["image"] for c in spec["deploymentSpec"]["executors"].values()}
    assert images == {IMAGE} and spec["root"]["inputDefinitions"]["parameters"]["image"]["defaultValue"] == IMAGE


def test_the_pipeline_image_is_the_one_the_chart_and_skaffold_deploy():
    values = yaml.safe_load((REPO / "charts" / "mofi" / "values.yaml").read_text())
    skaffold = yaml.safe_load((REPO / "skaffold.yaml").read_text())
    assert values["image"]["repository"] == IMAGE
    assert [a["image"] for a in skaffold["build"]["artifacts"]] == [IMAGE]
    assert TrainJob().image == IMAGE


def test_the_training_task_is_retried_and_has_a_deadline_beyond_its_jobs():
    docs = list(yaml.safe_load_all(PIPELINE_FILE.read_text()))
    task = docs[0]["root"]["dag"]["tasks"]["train-mofi"]
    assert task["retryPolicy"]["maxRetryCount"] == TRAIN_RETRIES > 0
    deadline = int(
        docs[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-train-mofi"]["activeDeadlineSeconds"]
    )
    training = Settings().training
    assert deadline == TRAIN_STEP_TIMEOUT_S > training.job_start_timeout_s + training.job_timeout_s


def test_volcano_job_gets_credentials_from_the_secret_only(settings):
    settings.s3.secret_key = "do-not-leak"
    job = TrainJob(
        scheduler="kubernetes",
        nnodes=2,
        nproc_per_node=4,
        image="registry/mofi:1",
        gpu=4,
        namespace="mofi",
        credentials_secret="creds",
    )
    app = train_app(settings, "s3://b/snapshots/v/manifest.json", "prod", {"model": "mofi-tiny-vit", "steps": 5}, job)
    runner = get_runner()
    try:
        request = plan_training(runner, app, job).request.resource
    finally:
        runner.close()
    assert request["kind"] == "Job" and len(request["spec"]["tasks"]) == 2
    for task in request["spec"]["tasks"]:
        container = task["template"].spec.containers[0]
        env = {e.name: e for e in container.env}
        assert "do-not-leak" not in json.dumps([e.value for e in container.env])
        for name in SECRET_ENV:
            assert env[name].value is None and env[name].value_from.secret_key_ref.name == "creds"
        assert env["MOFI_S3_ENDPOINT"].value == settings.s3.endpoint
        assert "--model mofi-tiny-vit --steps 5" in " ".join(container.command)


def test_train_options_are_checked_before_any_job_starts(settings):
    with pytest.raises(TypeError, match="no_such_option"):
        train_app(settings, "s3://b/s/manifest.json", "r", {"no_such_option": 1}, TrainJob())


def test_training_job_runs_the_config_the_step_built(settings):
    loss = {"class_weight": 0.7, "cosface_scale": 24.0, "cosface_margin": 0.3, "temperature": 0.1}
    loss |= {"learn_temperature": False, "entity_text": "name"}
    options = {"model": "mofi-tiny-vit", "steps": 5, **loss}
    cfg = train_config(settings, "s3://b/s/manifest.json", "r", options)
    assert cfg.loss == LossConfig(settings.training.recipe, **loss)
    assert cfg.checkpoint_dir == settings.training.checkpoint_dir
    app = train_app(settings, "s3://b/s/manifest.json", "r", options, TrainJob())
    assert "mofi.cli train " + shlex.join(config_argv(cfg)) in " ".join(app.roles[0].args)


def test_pipeline_runs_locally_end_to_end_and_its_quality_gate_stops_indexing(settings, store, tmp_path):
    prefix = f"s3://{settings.s3.i2e_bucket}/{settings.writer.prefix}"
    samples = [s for shard in range(2) for s in make_samples(24, seed=shard)]
    for shard in range(2):
        write_shard(store, f"{prefix}/shard-{shard:04d}.tar", samples[shard * 24 : (shard + 1) * 24])
    settings.training.checkpoint_dir = f"s3://{settings.s3.models_bucket}/mofi"
    settings.embedder.checkpoint = f"s3://{settings.s3.models_bucket}/serving/latest.pt"
    options = json.dumps(
        {
            "lr": 2e-3,
            "tower_lr_scale": 1.0,
            "warmup_steps": 2,
            "pretrained_towers": False,
            "checkpoint_every": 4,
            "shuffle_buffer": 16,
        }
    )
    params = dict(
        snapshot_version="v1",
        min_count=2,
        val_percent=10.0,
        model_config="mofi-tiny-vit",
        steps=8,
        batch_size=4,
        train_options=options,
        benchmark=str(BENCHMARK),
        index_batch_size=16,
    )

    # Nothing is published yet: the gate compares against chance (and skips the absent published model).
    out = run_local(settings, tmp_path / "root", roll=True, gate="chance,published", **params)

    model = out["model"]
    assert model["step"] == 8 and re.fullmatch(r"v1-mofi-tiny-vit-multitask-[0-9a-f]{8}", model["run_name"])
    assert model["snapshot"] == f"s3://{settings.s3.i2e_bucket}/snapshots/v1/manifest.json"
    assert load_checkpoint(ObjectStore(settings.s3), model["checkpoint"])["step"] == 8
    metrics, evaluation = out["metrics"], out["evaluation"]
    assert 0.0 < metrics["map"] <= 1.0 and "map_emoji" in metrics
    assert evaluation["map"] == metrics["map"] and evaluation["num_images"] == 17
    assert metrics["gate_passed"] == 1.0
    assert evaluation["gate"]["references"] == {"chance": metrics["chance_map"], "published": None}
    assert evaluation["published"] is None and metrics["map"] > metrics["chance_map"]
    assert metrics["baseline_map"] == evaluation["baseline"]["map"] and evaluation["baseline"]["image_size"] == 32
    assert metrics["unseen_classes"] == 4 and "map_seen" not in metrics  # shapes trained, emoji and sky evaluated
    assert metrics["class_loss_chance"] == pytest.approx(evaluation["class_loss_chance"]["value"])
    # One client for the rest of the test: milvus-lite serves the file from this process while it is open
    # (reopening the same file right after closing it can race the previous local server's shutdown).
    vectors = VectorStore(settings.milvus.uri, settings.milvus.collection)
    try:
        first = vectors.current()
        assert first is not None and vectors.count(first) == len(samples)
        concrete, hits = vectors.search(np.ones(vectors.dim(first)), 5)  # published by the step's process
        assert concrete == first and len(hits) == 5 and {h.pair_id for h in hits} <= {s.pair_id for s in samples}
        served = load_checkpoint(ObjectStore(settings.s3), settings.embedder.checkpoint)  # the roll step published it
        assert served["version"] == f"{model['run_name']}-step8" and "optimizer" not in served

        # The default gate (baseline and published) with a margin the model does not reach: the run
        # fails after evaluation, before the index step, with the numbers in the evaluate step's Metrics.
        with pytest.raises(RuntimeError, match="gate-failed"):
            run_local(settings, tmp_path / "root2", roll=True, min_gain=0.5, **params)
        assert vectors.versions() == [first] and vectors.current() == first
    finally:
        vectors.close()
    failed = _executor_metrics(tmp_path / "root2", "evaluate-mofi")
    assert failed["gate_passed"] == 0.0 and failed["map"] == pytest.approx(metrics["map"])
    assert failed["baseline_map"] == pytest.approx(metrics["baseline_map"])
    assert failed["map"] < failed["baseline_map"] + 0.5
    assert "published_map" not in failed  # the published model is this checkpoint: no number to beat


def _executor_metrics(root: Path, task: str) -> dict:
    """The Metrics a task of a local run logged (kfp.local keeps each task's executor output)."""
    (path,) = (root).glob(f"*/{task}/executor_output.json")
    artifacts = json.loads(path.read_text())["artifacts"]["metrics"]["artifacts"]
    return artifacts[0]["metadata"]


def test_gate_compares_against_the_published_model_both_ways(settings, store, tmp_path):
    """Of two checkpoints, the one with the higher mAP passes a gate against the other published; a rerun
    of the published checkpoint has no number to beat; a bad gate name is refused."""
    from mofi_platform.training.models import create_model_and_transforms

    uris = {}
    for seed in (0, 1):
        torch.manual_seed(seed)
        model, _, _ = create_model_and_transforms("mofi-tiny-vit")
        uris[seed] = f"s3://{settings.s3.models_bucket}/gate/ckpt-{seed}.pt"
        save_checkpoint(
            store, uris[seed], {"model_name": "mofi-tiny-vit", "model": model.state_dict(), "version": f"v{seed}"}
        )
    alone = {seed: evaluate_checkpoint(settings, uri, str(BENCHMARK), gate="none")["map"] for seed, uri in uris.items()}
    assert alone[0] != alone[1]
    verdicts = {}
    for candidate, published in ((0, 1), (1, 0)):
        settings.embedder.checkpoint = uris[published]
        out = evaluate_checkpoint(settings, uris[candidate], str(BENCHMARK), gate="published")
        assert out["published"]["version"] == f"v{published}"
        assert out["published"]["map"] == pytest.approx(alone[published])
        assert out["gate"]["references"] == {"published": out["published"]["map"]}
        verdicts[candidate] = out["gate"]["passed"]
        assert verdicts[candidate] == (alone[candidate] > alone[published]), out["gate"]
        assert verdicts[candidate] or "does not beat the published" in out["gate"]["failures"][0]
    assert sorted(verdicts.values()) == [False, True]
    same = evaluate_checkpoint(settings, uris[0], str(BENCHMARK), gate="published,chance", min_map=1.01)
    assert same["published"]["map"] is None and same["gate"]["references"]["published"] is None
    assert not same["gate"]["passed"] and "below the floor min_map=1.0100" in same["gate"]["failures"][0]
    with pytest.raises(ValueError, match="gate 'baselin'"):
        evaluate_checkpoint(settings, uris[0], str(BENCHMARK), gate="baselin")


def test_the_deploy_guide_pins_the_kfp_backend_of_the_sdk_that_compiles_the_pipeline():
    guide = (REPO / "docs" / "deploy.md").read_text()
    pinned = re.search(r"export PIPELINE_VERSION=(\S+)", guide).group(1)
    assert pinned == kfp.__version__ and f"KFP {pinned} backend" in guide
