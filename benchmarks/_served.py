"""The model the demo serves, for the embedder and search benchmarks.

Why derived from the demo plan: the numbers must describe the served model (architecture and input
size), so the defaults come from ``pipelines.demo.plans`` rather than being restated here. With
``--checkpoint`` the trained model itself is loaded (e.g. the demo's published checkpoint); without
it, the same architecture with its pretrained towers (speed does not depend on the weights, and the
frozen towers give real embeddings for recall).
"""

from __future__ import annotations

import argparse
import json

from mofi.settings import Settings
from mofi_platform.pipelines.demo.plans import PLANS
from mofi_platform.services.embedder.models import ModelHolder
from mofi_platform.services.embedder.resources import load_holder
from mofi_platform.training import create_model_and_transforms, get_tokenizer
from mofi_platform.training.inference import EmbeddingModel

__all__ = ["add_model_options", "served_holder"]

_FULL = PLANS["full"].pipeline


def add_model_options(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--checkpoint", default=None, help="Checkpoint URI to serve (default: the architecture below).")
    ap.add_argument("--model", default=_FULL["model_config"], help="Model config when no checkpoint is given.")
    ap.add_argument(
        "--image-size",
        type=int,
        default=json.loads(_FULL["train_options"]).get("image_size", 0),
        help="Input size when no checkpoint is given (0: the config's).",
    )


def served_holder(args: argparse.Namespace, settings: Settings) -> ModelHolder:
    if args.checkpoint:
        return load_holder(settings, args.checkpoint)
    model, _, eval_transform = create_model_and_transforms(
        args.model, pretrained_towers=True, image_size=args.image_size or None
    )
    name = f"{args.model}@{args.image_size or 'default'}px"
    return ModelHolder(EmbeddingModel.from_model(model, eval_transform, get_tokenizer(args.model), "bench", name))
