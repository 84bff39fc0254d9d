"""`mofi demo --quick` as a user runs it, against the real local stack: every step end to end, then a
second run that resumes from the recorded state instead of starting over, then a --fresh run that
rebuilds the I2E dataset and retrains under new names."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from mofi.i2e import list_shards, read_manifest
from mofi.objstore import ObjectStore


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
    assert 0.0 <= state["pipeline"]["evaluation"]["map"] <= 1.0
    assert out.count("    search ") == 6  # 4 text and 2 image searches answered over gRPC
    report = (state_dir / "report" / "index.html").read_text()
    assert model["checkpoint"] in report and "Retrieval" in report and report.count("<img") > 20

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
    assert state["pipeline"]["model"]["run_name"] == "demo-quick-1-mofi-tiny-vit-multitask"
    assert state["pipeline"]["model"]["step"] == 12 and state["timings"]["pipeline"] > 5
