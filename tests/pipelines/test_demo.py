"""`mofi demo --quick` as a user runs it, against the real local stack: every step end to end, then a
second run that resumes from the recorded state instead of starting over, then a --fresh run that
rebuilds the I2E dataset and retrains under new names; and the step runner, the quick plan's settings and the
topic reader it counts dead letters with, on their own."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time

import click

from mofi.i2e import list_shards, read_manifest
from mofi.kafka import all_topics, ensure_topics, make_producer, make_reader
from mofi.objstore import ObjectStore
from mofi_platform.pipelines.demo import PLANS
from mofi_platform.pipelines.demo.plans import demo_settings
from mofi_platform.pipelines.demo.runner import StepRunner


def test_step_runner_reuses_valid_results_and_forgets_on_request(tmp_path):
    said: list[str] = []
    runner = StepRunner(tmp_path / "demo", echo=said.append)
    builds = []
    with runner.step("data", "Data"):
        assert runner.cached("data", lambda r: True, lambda: builds.append(1) or {"pairs": 3}) == {"pairs": 3}
    assert builds == [1] and "[1] Data" in click.unstyle(said[0]) and said[-1].startswith("    done in")

    again = StepRunner(tmp_path / "demo", echo=said.append)  # a rerun reads the state file
    with again.step("data", "Data"):
        assert again.cached("data", lambda r: r["pairs"] == 3, lambda: builds.append(2) or {}) == {"pairs": 3}
    assert builds == [1] and "reusing the result of an earlier run" in said[-2]
    assert again.cached("data", lambda r: False, lambda: {"pairs": 4}) == {"pairs": 4}  # outputs gone: rebuilt
    assert json.loads((tmp_path / "demo" / "state.json").read_text())["data"] == {"pairs": 4}

    again.record("clip", {"threshold": 0.2})
    again.forget(keep=("clip",))
    state = json.loads((tmp_path / "demo" / "state.json").read_text())
    assert state == {"clip": {"threshold": 0.2}, "generation": 1} and again.generation == 1


def test_quick_plan_has_its_own_topics_and_buckets(settings):
    quick = demo_settings(settings, PLANS["quick"])
    assert all_topics(quick.kafka) == [f"{t}.quick" for t in all_topics(settings.kafka)]
    assert quick.s3.i2e_bucket == f"{settings.s3.i2e_bucket}-quick"
    assert all_topics(demo_settings(settings, PLANS["full"]).kafka) == all_topics(settings.kafka)


def test_reader_counts_a_topic_from_the_start_without_a_group(settings):
    k = settings.kafka
    ensure_topics(k, all_topics(k))
    producer = make_producer(k)
    for i in range(3):
        producer.send(k.dead_letter_topic, key=str(i).encode(), value=b"x")
    producer.flush()
    producer.close()
    reader = make_reader(k, k.dead_letter_topic)
    try:
        seen, deadline = 0, time.monotonic() + 30
        while seen < 3 and time.monotonic() < deadline:
            seen += sum(len(r) for r in reader.poll(timeout_ms=500).values())
        assert seen == 3 and reader.config["group_id"] is None
    finally:
        reader.close()


def _demo(settings, state_dir, *extra):
    env = {**os.environ, **settings.to_env(), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "mofi.cli", "demo", "--quick", "--keep-stack", "--state-dir", str(state_dir), *extra]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return proc.stdout


def test_quick_demo_runs_every_step_and_a_rerun_resumes(settings, tmp_path):
    models = f"s3://{settings.s3.models_bucket}"
    settings.scorer.checkpoint = f"{models}/clip/lit-bootstrap.pt"
    settings.embedder.checkpoint = f"{models}/mofi/latest.pt"
    settings.training.checkpoint_dir = f"{models}/mofi"
    state_dir = tmp_path / "demo"

    out = _demo(settings, state_dir)

    state = json.loads((state_dir / "state.json").read_text())
    stream = state["stream"]
    assert stream["produced"] == 30  # the fixture pairs, every one accounted for exactly once
    assert stream["written"] + stream["no_entity"] + stream["dead_lettered"] == 30 and stream["written"] > 0
    store = ObjectStore(settings.s3)
    i2e = f"s3://{settings.s3.i2e_bucket}-quick/{settings.writer.prefix}/"
    assert sum(read_manifest(store, s)["count"] for s in list_shards(store, i2e)) == stream["written"]
    model = state["pipeline"]["model"]
    assert model["step"] == 12 and store.exists(model["checkpoint"])
    assert store.exists(settings.embedder.checkpoint.replace(models, f"{models}-quick"))  # published for serving
    evaluation = state["pipeline"]["evaluation"]
    assert 0.0 <= evaluation["map"] <= 1.0
    # the quick plan gates against chance only, and says so; the baseline and chance stand beside the mAP
    assert evaluation["gate"]["against"] == ["chance"] and evaluation["gate"]["passed"]
    assert evaluation["baseline"]["image_size"] == evaluation["image_size"]
    assert "frozen ImageNet baseline mAP" in out and "chance mAP (random embeddings)" in out
    assert "quality gate                     against chance (margin 0.0): passed" in out
    assert "class loss, last 5 steps (chance level)" in out
    assert out.count("    search ") == 6  # 4 text and 2 image searches answered over gRPC
    report = (state_dir / "report" / "index.html").read_text()
    assert model["checkpoint"] in report and "Retrieval" in report and report.count("<img") > 20
    assert 'data-bar="model"' in report and 'data-bar="baseline"' in report and 'data-bar="chance"' in report

    out = _demo(settings, state_dir)

    assert out.count("reusing the result of an earlier run") == 3  # scorer, I2E, pipeline
    timings = json.loads((state_dir / "state.json").read_text())["timings"]
    assert timings["stream"] < 5 and timings["pipeline"] < 5
    assert out.count("    search ") == 6 and (state_dir / "report" / "index.html").exists()

    # --fresh: a new I2E generation, so a new snapshot and a training run that starts from step 0.
    out = _demo(settings, state_dir, "--fresh")
    state = json.loads((state_dir / "state.json").read_text())
    assert state["generation"] == 1 and state["stream"]["produced"] == 30
    assert state["pipeline"]["model"]["snapshot"].endswith("/snapshots/demo-quick-1/manifest.json")
    assert re.fullmatch(r"demo-quick-1-mofi-tiny-vit-multitask-[0-9a-f]{8}", state["pipeline"]["model"]["run_name"])
    assert state["pipeline"]["model"]["step"] == 12 and state["timings"]["pipeline"] > 5
