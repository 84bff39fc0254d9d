"""LiT-style bootstrap: frozen pretrained towers, trained projections, calibrated threshold."""

from __future__ import annotations

import json

import numpy as np
import torch
from click.testing import CliRunner
from PIL import Image, ImageDraw

from mofi.cli import main
from mofi_platform.training.clip_bootstrap import BootstrapConfig, BootstrapPair, bootstrap
from mofi_platform.training.inference import EmbeddingModel
from mofi_platform.training.models import create_model_and_transforms

COLOURS = {
    "red": (220, 20, 20),
    "green": (20, 200, 20),
    "blue": (20, 20, 220),
    "yellow": (240, 230, 20),
    "black": (0, 0, 0),
    "white": (255, 255, 255),
}


def _pairs() -> list[BootstrapPair]:
    out = []
    for name, rgb in COLOURS.items():
        for shape in ("circle", "square"):
            im = Image.new("RGB", (64, 64), (128, 128, 128))
            draw = ImageDraw.Draw(im)
            (draw.ellipse if shape == "circle" else draw.rectangle)([8, 8, 56, 56], fill=rgb)
            out.append(BootstrapPair(f"{name}-{shape}", f"a {name} {shape}", im))
    return out


def test_bootstrap_learns_projections_only_and_calibrates(tmp_path):
    pairs = _pairs()
    # the bootstrap freezes the towers itself, so the unlocked config of the same towers trains LiT-style
    cfg = BootstrapConfig(model="mofi-effnet-lite0-minilm", image_size=64, epochs=60, batch_size=8)
    uri = str(tmp_path / "lit.pt")
    ckpt, calib = bootstrap(pairs, cfg, out_uri=uri)

    assert ckpt["loss_history"][-1] < 0.5 * ckpt["loss_history"][0]
    # frozen towers: identical to the pretrained weights
    ref, _, _ = create_model_and_transforms(cfg.model, pretrained_towers=True, image_size=cfg.image_size)
    ref_state = ref.state_dict()
    for key in ("visual.trunk.conv_stem.weight", "text.transformer.encoder.layer.0.attention.self.query.weight"):
        assert torch.equal(ckpt["model"][key], ref_state[key])
    assert not torch.equal(ckpt["model"]["text.proj.weight"], ref_state["text.proj.weight"])

    # calibration on all 12 pairs (too few to hold some out): own texts above, wrong texts below
    assert not calib.held_out and calib.pairs == 12
    assert calib.true_kept >= 0.9 and calib.wrong_kept <= 0.1
    assert calib.positive_mean > calib.negative_mean + 0.3
    assert calib.kept_examples and all(e["score"] >= calib.threshold for e in calib.kept_examples)
    assert all(e["score"] < calib.threshold for e in calib.dropped_examples)

    # the scorer's loader reads the checkpoint and reproduces the calibrated behaviour
    model = EmbeddingModel.load(uri)
    assert model.version == ckpt["version"] and model.version.startswith("lit-bootstrap-")
    sim = model.embed_texts([p.text for p in pairs]) @ model.embed_images([p.image for p in pairs]).T
    assert (sim.argmax(0) == np.arange(len(pairs))).mean() >= 0.9
    assert abs(float(np.diag(sim).mean()) - calib.positive_mean) < 1e-3


def test_bootstrap_command_on_the_fixture_corpus_writes_a_loadable_checkpoint(settings, store, tmp_path):
    out = f"s3://{settings.s3.models_bucket}/clip/lit-bootstrap.pt"
    report = tmp_path / "calibration.json"
    res = CliRunner().invoke(
        main,
        [
            "clip",
            "bootstrap",
            "--fixture",
            "--model",
            "mofi-effnet-lite0-minilm",
            "--image-size",
            "64",
            "--epochs",
            "30",
            "--out",
            out,
            "--report",
            str(report),
        ],
        env=settings.to_env(),
        catch_exceptions=False,
    )
    assert res.exit_code == 0, res.output
    rep = json.loads(report.read_text())
    assert rep["pairs"] == 30 and rep["checkpoint"] == out
    assert 0 < rep["true_kept"] <= 1 and rep["wrong_kept"] < rep["true_kept"]
    assert f"MOFI_SCORER_THRESHOLD={rep['threshold']}" in res.output
    model = EmbeddingModel.load(out, settings.s3)
    assert model.version == rep["version"]
