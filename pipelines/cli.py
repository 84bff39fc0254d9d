"""`mofi pipeline compile|run|submit`: the Kubeflow training pipeline from the command line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

__all__ = ["pipeline"]


def _params(pairs: tuple[str, ...]) -> dict[str, Any]:
    """``name=value`` pairs: numbers and booleans parse as JSON; anything else (JSON objects too) stays a string."""
    out: dict[str, Any] = {}
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"{pair!r} is not name=value", param_hint="-p")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        out[name] = raw if isinstance(value, (dict, list, str)) or value is None else value
    return out


@click.group()
def pipeline() -> None:
    """The Kubeflow pipeline: snapshot I2E -> train (torchx) -> evaluate -> index into Milvus -> roll embedder."""


@pipeline.command("compile")
@click.option(
    "--out",
    type=click.Path(dir_okay=False),
    default=None,
    help="Output YAML [default: pipelines/mofi_train.yaml, the committed one].",
)
@click.option("--image", default=None, help="Image the steps and training jobs run in [default: mofi, the chart's].")
def compile_cmd(out: str | None, image: str | None) -> None:
    """Compile the pipeline to YAML for the Kubeflow UI or client."""
    from mofi_platform.pipelines.pipeline import DEFAULT_IMAGE, PIPELINE_FILE, compile_pipeline

    path = compile_pipeline(out or PIPELINE_FILE, image or DEFAULT_IMAGE)
    click.echo(f"compiled {path}")


@pipeline.command("run")
@click.option(
    "-p",
    "--param",
    "params",
    multiple=True,
    metavar="NAME=VALUE",
    help="Pipeline parameter (repeatable), e.g. -p steps=200 -p model_config=mofi-tiny-vit.",
)
@click.option(
    "--root",
    type=click.Path(file_okay=False),
    default=".mofi/pipeline-root",
    show_default=True,
    help="Local pipeline root: every step's artifacts and logs.",
)
@click.option(
    "--out",
    "out_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Also write the result (checkpoint, metrics, evaluation) as JSON here.",
)
@click.pass_obj
def run_cmd(settings, params: tuple[str, ...], root: str, out_path: str | None) -> None:
    """Run the whole pipeline on this machine (kfp.local; training with torchx local_cwd, 2 ranks)."""
    from kfp.dsl.types.type_utils import InconsistentTypeException

    from mofi_platform.pipelines.local import run_local

    try:
        result = run_local(settings, Path(root), **_params(params))
    except (RuntimeError, InconsistentTypeException) as e:
        raise click.ClickException(str(e)) from None
    except TypeError as e:  # an unknown parameter name
        raise click.UsageError(str(e)) from None
    text = json.dumps(result, indent=2, default=str)
    if out_path:
        Path(out_path).write_text(text + "\n")
    click.echo(text)


@pipeline.command("submit")
@click.option("--host", required=True, help="Kubeflow Pipelines API endpoint, e.g. http://127.0.0.1:8080.")
@click.option(
    "--package",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Compiled pipeline YAML [default: the committed one].",
)
@click.option("--experiment", default="mofi", show_default=True)
@click.option("--namespace", default=None, help="Kubeflow profile namespace (multi-user installs).")
@click.option(
    "--service-account",
    default="mofi-pipeline",
    show_default=True,
    help="Runs with this account (the chart's, allowed to create Volcano jobs and roll the embedder).",
)
@click.option("-p", "--param", "params", multiple=True, metavar="NAME=VALUE", help="Pipeline parameter (repeatable).")
def submit_cmd(
    host: str,
    package: str | None,
    experiment: str,
    namespace: str | None,
    service_account: str,
    params: tuple[str, ...],
) -> None:
    """Start a run on a Kubeflow Pipelines installation."""
    import kfp

    from mofi_platform.pipelines.pipeline import PIPELINE_FILE

    client = kfp.Client(host=host, namespace=namespace)
    run = client.create_run_from_pipeline_package(
        str(package or PIPELINE_FILE),
        arguments=_params(params),
        experiment_name=experiment,
        namespace=namespace,
        service_account=service_account,
    )
    click.echo(f"run {run.run_id}: {host.rstrip('/')}/#/runs/details/{run.run_id}")
