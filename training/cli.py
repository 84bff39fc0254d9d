"""``mofi train`` and ``mofi eval``.

``mofi train`` runs one rank: alone it is single-process training, under torchrun (the torchx
component in ``mofi_platform.training.components``) each process is a DDP rank. Its options are generated from
``TrainConfig`` (its flat options, ``mofi_platform.training.config``) so the config, the CLI and its
help never drift apart; model, recipe, checkpoint folder and interval default to the ``training``
settings section, the pixel limit to ``data.max_pixels``.
"""

from __future__ import annotations

import json
import logging
import os
import typing
from collections.abc import Callable
from typing import Any

import click

from mofi_platform.training.config import SETTINGS_DEFAULTS, TrainConfig, option_fields

__all__ = ["train", "evaluate"]


def _config_options(fn: Callable) -> Callable:
    for name, f, hint in reversed(option_fields()):
        flag = "--" + name.replace("_", "-")
        required = name in ("snapshot", "run_name")
        shown = "settings" if name in SETTINGS_DEFAULTS else repr(f.default)
        help_text = f.metadata["help"] + ("" if required or f.default is None else f" [default: {shown}]")
        if hint is bool:
            fn = click.option(f"{flag}/--no-{flag[2:]}", name, default=None, help=help_text)(fn)
        else:
            fn = click.option(flag, name, type=_value_type(hint), default=None, required=required, help=help_text)(fn)
    return fn


def _value_type(hint: Any) -> Any:
    """``float`` for ``float | None``: an option left out is None in any case."""
    return next((t for t in typing.get_args(hint) if t is not type(None)), hint)


@click.command("train")
@_config_options
@click.pass_obj
def train(settings: Any, **options: Any) -> None:
    """Train MOFI on an I2E snapshot; rerun the same --run-name to resume from its last checkpoint."""
    from mofi_platform.training.trainer import train as run_training

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        result = run_training(TrainConfig.from_options(options, settings), settings.s3)
    except ValueError as e:
        raise click.ClickException(str(e)) from None
    if int(os.environ.get("RANK", 0)) == 0:
        last = result.metrics[-1] if result.metrics else {}
        click.echo(
            json.dumps(
                {
                    "run_dir": result.run_dir,
                    "checkpoint": result.checkpoint,
                    "step": result.step,
                    "resumed_from": result.resumed_from,
                    "loss": last.get("loss"),
                }
            )
        )


@click.command("eval")
@click.option(
    "--benchmark",
    required=True,
    type=click.Path(exists=True, file_okay=False),
    help="Folder in GPR1200 layout ({class}_{name}.png, optional domains.json / classes.json).",
)
@click.option(
    "--checkpoint", default=None, help="MOFI checkpoint, local path or s3:// [default: settings embedder.checkpoint]."
)
@click.option(
    "--baseline",
    type=click.Choice(["imagenet-effnet-lite0"]),
    default=None,
    help="Evaluate frozen ImageNet features instead of a checkpoint.",
)
@click.option(
    "--image-size",
    type=click.IntRange(min=16),
    default=None,
    help="Input size of --baseline [default: 224, the ImageNet weights' size].",
)
@click.option(
    "--kb",
    "kb_file",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Knowledge base whose same-as links map benchmark entities to canonical ids [default: ner.kb_path if set].",
)
@click.option(
    "--cache",
    default=None,
    help="Where the frozen baseline's benchmark embeddings are cached [default: s3://<models_bucket>/evaluation].",
)
@click.option(
    "--out", "out_path", type=click.Path(dir_okay=False), default=None, help="Also write the results JSON here."
)
@click.option(
    "--run-dir", "run_dirs", multiple=True, help="Training run folder(s) whose loss curves to plot (repeatable)."
)
@click.option(
    "--curves", type=click.Path(dir_okay=False), default=None, help="PNG of the training curves of --run-dir runs."
)
@click.pass_obj
def evaluate(
    settings: Any,
    benchmark: str,
    checkpoint: str | None,
    baseline: str | None,
    image_size: int | None,
    kb_file: str | None,
    cache: str | None,
    out_path: str | None,
    run_dirs: tuple[str, ...],
    curves: str | None,
) -> None:
    """Retrieval mAP (GPR1200 protocol, per domain, seen/unseen classes), zero-shot and linear-probe accuracy,
    beside the frozen baseline at the checkpoint's input size and the benchmark's chance level; curves PNG."""
    from pathlib import Path

    from minio.error import S3Error

    from mofi.objstore import ObjectStore
    from mofi_platform.training.evaluation import embed_benchmark, evaluate_embeddings, load_benchmark
    from mofi_platform.training.references import chance_map

    try:
        bench = load_benchmark(benchmark)
    except ValueError as e:
        raise click.ClickException(str(e)) from None
    store = ObjectStore(settings.s3)
    if baseline:
        from mofi_platform.training.baselines import IMAGE_SIZE, imagenet_effnet_lite0_embedder

        size = image_size or IMAGE_SIZE
        emb = embed_benchmark(bench, imagenet_effnet_lite0_embedder(size))
        results = {"model": baseline, "version": baseline, "image_size": size, **evaluate_embeddings(bench, emb)}
        results["chance"] = chance_map(bench)
    else:
        from mofi_platform.training.checkpoint import load_checkpoint
        from mofi_platform.training.references import evaluate_with_references

        uri = checkpoint or settings.embedder.checkpoint
        try:
            ckpt = load_checkpoint(store, uri)
        except (OSError, KeyError, RuntimeError, S3Error) as e:
            raise click.ClickException(f"cannot load checkpoint {uri}: {e}") from None
        kb_file = kb_file or (settings.ner.kb_path if Path(settings.ner.kb_path or ".").is_file() else None)
        canonical = None
        if kb_file:
            from mofi.kb import KnowledgeBase

            canonical = KnowledgeBase.load(kb_file).canonical
        results = evaluate_with_references(bench, ckpt, store, cache or settings.s3.models_uri("evaluation"), canonical)
    if curves:
        if not run_dirs:
            raise click.UsageError("--curves needs at least one --run-dir")
        from mofi_platform.training.checkpointer import read_metrics
        from mofi_platform.training.curves import plot_training_curves

        runs = {d.rstrip("/").rsplit("/", 1)[-1]: read_metrics(store, d) for d in run_dirs}
        chance = results.get("class_loss_chance")
        results["curves"] = str(plot_training_curves(runs, curves, {"class_loss": chance["value"]} if chance else None))
    text = json.dumps(results, indent=2)
    if out_path:
        Path(out_path).parent.mkdir(parents=True, exist_ok=True)
        Path(out_path).write_text(text + "\n")
    click.echo(text)
