"""``mofi train`` and ``mofi eval``.

``mofi train`` runs one rank: alone it is single-process training, under torchrun (the torchx
component in ``training.components``) each process is a DDP rank. Its options are generated from
``TrainConfig`` so the config, the CLI and its help never drift apart; model, recipe, checkpoint
folder and interval default to the ``training`` settings section.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import typing
from typing import Any, Callable

import click

from training.trainer import TrainConfig

__all__ = ["train"]

#: TrainConfig fields whose default comes from the settings object (section ``training``).
SETTINGS_DEFAULTS = ("model", "recipe", "checkpoint_dir", "checkpoint_every")


def _config_options(fn: Callable) -> Callable:
    hints = typing.get_type_hints(TrainConfig)
    for f in reversed(dataclasses.fields(TrainConfig)):
        flag = "--" + f.name.replace("_", "-")
        required = f.name in ("snapshot", "run_name")
        shown = "settings" if f.name in SETTINGS_DEFAULTS else repr(f.default)
        help_text = f"{f.metadata['help']}" + ("" if required else f" [default: {shown}]")
        if hints[f.name] is bool:
            fn = click.option(f"{flag}/--no-{flag[2:]}", f.name, default=None, help=help_text)(fn)
        else:
            fn = click.option(flag, f.name, type=hints[f.name], default=None, required=required, help=help_text)(fn)
    return fn


def build_config(settings: Any, options: dict[str, Any]) -> TrainConfig:
    values = {k: v for k, v in options.items() if v is not None}
    for name in SETTINGS_DEFAULTS:
        values.setdefault(name, getattr(settings.training, name))
    values.setdefault("max_pixels", settings.data.max_pixels)
    return TrainConfig(**values)


@click.command("train")
@_config_options
@click.pass_obj
def train(settings: Any, **options: Any) -> None:
    """Train MOFI on an I2E snapshot; rerun the same --run-name to resume from its last checkpoint."""
    from training.trainer import train as run_training

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    result = run_training(build_config(settings, options), settings.s3)
    if int(os.environ.get("RANK", 0)) == 0:
        last = result.metrics[-1] if result.metrics else {}
        click.echo(json.dumps({"run_dir": result.run_dir, "checkpoint": result.checkpoint, "step": result.step,
                               "resumed_from": result.resumed_from, "loss": last.get("loss")}))
