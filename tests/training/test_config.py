"""TrainConfig's flat options: the CLI, the torchx command line and the checkpoint all name them alike."""

from __future__ import annotations

import dataclasses

import pytest

from mofi.settings import Settings
from mofi_platform.training.cli import train as train_command
from mofi_platform.training.config import SETTINGS_DEFAULTS, TrainConfig, config_argv, option_fields
from mofi_platform.training.losses import LossConfig


def _parse(argv: list[str], settings: Settings) -> TrainConfig:
    """What `mofi train <argv>` would train, without training."""
    ctx = train_command.make_context("train", list(argv), obj=settings)
    return TrainConfig.from_options(ctx.params, settings)


@pytest.mark.parametrize(
    "options",
    [
        {},
        {
            "model": "mofi-tiny-vit",
            "steps": 7,
            "lr": 2e-3,
            "pretrained_towers": False,
            "publish_uri": "",
            "recipe": "supervised",
            "cosface_scale": 16.0,
            "checkpoint_dir": "/tmp/x",
        },
        {"recipe": "multitask", "class_weight": 0.7, "cosface_margin": 0.35, "tower_lr_scale": 1.0, "image_size": 96},
        {"recipe": "contrastive", "temperature": 0.05, "learn_temperature": False, "entity_text": "name"},
    ],
)
def test_argv_round_trips_through_mofi_train(options):
    settings = Settings()
    settings.training.checkpoint_every = 7  # settings-backed defaults come from the settings given
    cfg = TrainConfig.from_options({"snapshot": "s3://b/s/manifest.json", "run_name": "r", **options}, settings)
    assert cfg.checkpoint_every == 7
    assert _parse(config_argv(cfg), Settings()) == cfg  # the command line carries every value itself


def test_options_are_flat_and_cover_the_config():
    cfg = TrainConfig.from_options({"snapshot": "s", "run_name": "r", "recipe": "contrastive", "cosface_scale": 8.0})
    assert cfg.loss == LossConfig("contrastive", cosface_scale=8.0)
    options = cfg.options()
    assert [name for name, _, _ in option_fields()] == list(options)
    assert {"recipe", "cosface_scale", "cosface_margin", "class_weight", "lr", "max_pixels"} <= set(options)
    assert {"temperature", "learn_temperature", "entity_text"} <= set(options)
    assert "loss" not in options and set(SETTINGS_DEFAULTS) <= set(options)
    assert TrainConfig.from_options(options) == cfg
    assert dataclasses.replace(cfg, steps=3).loss is cfg.loss
    with pytest.raises(TypeError):
        TrainConfig.from_options({"no_such_option": 1})


def test_defaults_are_the_settings_defaults():
    defaults, training = TrainConfig(), Settings().training
    assert (defaults.model, defaults.loss.recipe, defaults.checkpoint_dir, defaults.checkpoint_every) == (
        training.model,
        training.recipe,
        training.checkpoint_dir,
        training.checkpoint_every,
    )
    assert defaults.max_pixels == Settings().data.max_pixels
    assert defaults.loss == LossConfig(training.recipe)
