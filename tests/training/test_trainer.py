"""Training end to end on the real S3: single process, and 2-process torchx DDP killed and resumed."""

from __future__ import annotations

import dataclasses
import itertools
import math
import os
import sys
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from torchx.runner import get_runner
from torchx.specs import AppState

from mofi.cli import main
from mofi.i2e import Snapshot
from mofi.objstore import ObjectStore
from mofi_platform.training.checkpoint import latest_checkpoint, load_checkpoint
from mofi_platform.training.checkpointer import read_metrics
from mofi_platform.training.components import train as train_component
from mofi_platform.training.config import TrainConfig, config_argv
from mofi_platform.training.inference import EmbeddingModel
from mofi_platform.training.trainer import Ranks, build, build_loader, train

REPO = Path(__file__).resolve().parents[2]


def _config(settings, uri: str, **kw) -> TrainConfig:
    base = dict(
        snapshot=uri,
        run_name="run",
        model="mofi-tiny-vit",
        recipe="multitask",
        steps=30,
        batch_size=8,
        lr=2e-3,
        tower_lr_scale=1.0,
        warmup_steps=2,
        pretrained_towers=False,
        checkpoint_every=10,
        shuffle_buffer=16,
        checkpoint_dir=f"s3://{settings.s3.models_bucket}/mofi",
    )
    return TrainConfig.from_options({**base, **kw})


def test_single_process_training_learns_checkpoints_and_resumes(i2e_snapshot):
    settings, uri = i2e_snapshot
    cfg = _config(settings, uri, publish_uri=f"s3://{settings.s3.models_bucket}/mofi/latest.pt")
    result = train(cfg, settings.s3)
    assert result.step == 30 and result.resumed_from == 0
    losses = [m["class_loss"] for m in result.metrics]
    assert sum(losses[-5:]) / 5 < 0.8 * sum(losses[:5]) / 5  # it learns the shapes
    assert all(m["contrastive_loss"] > 0 for m in result.metrics)

    store = ObjectStore(settings.s3)
    ckpt = load_checkpoint(store, result.checkpoint)
    assert ckpt["step"] == 30 and ckpt["config"]["recipe"] == "multitask"
    assert {"optimizer", "scheduler", "model", "classes", "version"} <= set(ckpt)
    assert [c["id"] for c in ckpt["classes"]][:1] and len(ckpt["classes"]) == ckpt["model"]["entity_head.weight"].shape[
        0
    ]
    emb = EmbeddingModel.load(cfg.publish_uri, settings.s3)
    assert emb.version == "run-step30" and emb.embed_texts(["circle"]).shape == (1, 32)

    more = train(dataclasses.replace(cfg, steps=40), settings.s3)
    assert more.resumed_from == 30 and more.step == 40
    assert [m["step"] for m in read_metrics(store, cfg.run_dir)] == list(range(1, 41))
    # a finished run is not retrained
    again = train(dataclasses.replace(cfg, steps=40), settings.s3)
    assert again.resumed_from == 40 and again.metrics[-1]["step"] == 40
    # nor is a run resumed under other training settings: that would hand back a model of another configuration
    with pytest.raises(ValueError, match=r"trained with other settings \(lr: 0\.002 -> 0\.001\); use another run name"):
        train(dataclasses.replace(cfg, steps=50, lr=1e-3), settings.s3)


def _wait(runner, handle, states, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline:
        status = runner.status(handle)
        if status is not None and status.state in states:
            return status.state
        time.sleep(0.2)
    raise AssertionError(f"{handle} not in {states} after {timeout}s: {runner.status(handle)}")


@pytest.mark.slow
def test_torchx_two_process_ddp_run_is_killed_resumes_and_finishes(i2e_snapshot, tmp_path):
    settings, uri = i2e_snapshot
    store = ObjectStore(settings.s3)
    cfg = _config(settings, uri, steps=60, checkpoint_every=20, batch_size=4)
    args = config_argv(cfg)
    env = {
        **settings.to_env(),
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
    }
    app = train_component(*args, j="1x2", env=env)
    runner = get_runner()
    try:
        handle = runner.run(app, scheduler="local_cwd", cfg={"log_dir": str(tmp_path / "logs")})
        deadline = time.time() + 120
        while latest_checkpoint(store, cfg.run_dir) is None:
            assert time.time() < deadline, runner.status(handle)
            assert runner.status(handle).state == AppState.RUNNING, runner.status(handle)
            time.sleep(0.1)
        runner.cancel(handle)
        _wait(runner, handle, {AppState.CANCELLED, AppState.FAILED, AppState.SUCCEEDED}, 30)
        killed_at = latest_checkpoint(store, cfg.run_dir)[0]
        assert 20 <= killed_at < cfg.steps  # killed part-way, with a checkpoint to resume from

        handle = runner.run(app, scheduler="local_cwd", cfg={"log_dir": str(tmp_path / "logs2")})
        assert _wait(runner, handle, {AppState.SUCCEEDED, AppState.FAILED}, 300) == AppState.SUCCEEDED
    finally:
        runner.close()
    step, last = latest_checkpoint(store, cfg.run_dir)
    assert step == cfg.steps
    metrics = read_metrics(store, cfg.run_dir)
    assert [m["step"] for m in metrics] == list(range(1, cfg.steps + 1))
    assert load_checkpoint(store, last)["config"]["run_name"] == "run"


def test_mofi_train_rejects_bad_input_with_a_clear_message(settings):
    env = settings.to_env()
    runner = CliRunner()
    missing = f"s3://{settings.s3.i2e_bucket}/snapshots/none/manifest.json"
    res = runner.invoke(main, ["train", "--snapshot", missing, "--run-name", "r", "--model", "mofi-tiny-vit"], env=env)
    assert res.exit_code == 1 and f"cannot read snapshot {missing}" in res.output
    res = runner.invoke(main, ["train", "--snapshot", missing, "--run-name", "r", "--recipe", "clip"], env=env)
    assert res.exit_code == 1 and "unknown recipe 'clip'" in res.output
    res = runner.invoke(main, ["train", "--snapshot", missing, "--run-name", "r", "--model", "resnet"], env=env)
    assert res.exit_code == 1 and "unknown MOFI model 'resnet'" in res.output
    res = runner.invoke(
        main, ["eval", "--benchmark", str(REPO / "training"), "--checkpoint", "/nonexistent.pt"], env=env
    )
    assert res.exit_code == 1 and "no {class}_{name}" in res.output


def test_supervised_recipe_trains_only_the_image_path():
    from mofi_platform.training.trainer import build_model

    for name in ("mofi-tiny-vit", "mofi-effnet-lite0-minilm"):
        cfg = TrainConfig.from_options(
            dict(snapshot="s", run_name="r", model=name, recipe="supervised", pretrained_towers=False)
        )
        model, _ = build_model(cfg, 3)
        trainable = {n.split(".")[0] for n, p in model.named_parameters() if p.requires_grad}
        assert trainable == {"visual", "entity_head"}, (name, trainable)


def test_loss_options_of_mofi_train_reach_the_trainer(i2e_snapshot):
    """`mofi train` flags for lambda, CosFace s/m, temperature and entity text train what they say."""
    settings, uri = i2e_snapshot
    cfg = _config(
        settings,
        uri,
        steps=3,
        checkpoint_every=3,
        class_weight=0.3,
        cosface_scale=16.0,
        cosface_margin=0.1,
        temperature=0.05,
        learn_temperature=False,
        entity_text="name",
    )
    argv = config_argv(cfg)
    assert {"--temperature", "0.05", "--no-learn-temperature", "--entity-text", "name"} <= set(argv)
    res = CliRunner().invoke(main, ["train", *argv], env=settings.to_env())
    assert res.exit_code == 0, res.output
    ckpt = load_checkpoint(ObjectStore(settings.s3), latest_checkpoint(ObjectStore(settings.s3), cfg.run_dir)[1])
    assert {k: ckpt["config"][k] for k in ("class_weight", "cosface_scale", "cosface_margin")} == {
        "class_weight": 0.3,
        "cosface_scale": 16.0,
        "cosface_margin": 0.1,
    }
    assert ckpt["config"]["temperature"] == 0.05 and ckpt["config"]["entity_text"] == "name"
    assert float(ckpt["model"]["logit_scale"]) == pytest.approx(math.log(20.0))  # fixed: not learnt

    learnt = dataclasses.replace(cfg, loss=dataclasses.replace(cfg.loss, learn_temperature=True), run_name="learnt")
    result = train(learnt, settings.s3)
    scale = load_checkpoint(ObjectStore(settings.s3), result.checkpoint)["model"]["logit_scale"]
    assert float(scale) != pytest.approx(math.log(20.0), abs=1e-6)  # started there, then trained

    parts = build(cfg, 6, Ranks(0, 1, torch.device("cpu")))
    assert parts.loss_fn.lam == 0.3 and parts.loss_fn.cfg.cosface_scale == 16.0
    assert not parts.model.logit_scale.requires_grad
    snap = Snapshot.load(ObjectStore(settings.s3), uri)
    stream = build_loader(cfg, settings.s3, snap, parts, len(snap.classes), 0, Ranks(0, 1, torch.device("cpu"))).dataset
    names = {c.name for c in snap.classes}
    assert {ex["text"] for ex in itertools.islice(iter(stream), 8)} <= names  # names only, no ": description"
