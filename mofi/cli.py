"""The ``mofi`` command line.

Subcommands are plugged in through the ``mofi.commands`` entry-point group (pyproject.toml), so
the core never imports services, training or pipelines; each package contributes its own click
commands and they load only when invoked (``mofi --help`` stays fast and torch-free).
"""

from __future__ import annotations

import copy
import json
import sys
from importlib.metadata import entry_points

import click

from mofi.settings import CREDENTIALS, SettingsError, env_name, iter_fields, load_settings

__all__ = ["main"]

COMMAND_GROUP = "mofi.commands"


class PluginGroup(click.Group):
    """A click group whose extra commands come from entry points, loaded on first use."""

    def _plugins(self) -> dict:
        return {ep.name: ep for ep in entry_points(group=COMMAND_GROUP)}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self._plugins()))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        cmd = super().get_command(ctx, name)
        if cmd is not None:
            return cmd
        ep = self._plugins().get(name)
        if ep is None:
            return None
        try:
            return ep.load()
        except ImportError as e:  # a plugin whose optional dependency is missing must not break the CLI
            return _unavailable(name, e)


def _unavailable(name: str, error: Exception) -> click.Command:
    @click.command(name, help=f"(unavailable: {error})", context_settings={"ignore_unknown_options": True})
    @click.argument("args", nargs=-1, type=click.UNPROCESSED)
    def cmd(args: tuple[str, ...]) -> None:
        raise click.ClickException(f"`mofi {name}` cannot load: {error}")

    return cmd


@click.group(cls=PluginGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_file",
    type=click.Path(exists=True, dir_okay=False),
    envvar="MOFI_CONFIG",
    help="YAML/TOML/JSON settings file (also MOFI_CONFIG). MOFI_* variables override it.",
)
@click.pass_context
def main(ctx: click.Context, config_file: str | None) -> None:
    """MOFI: noisy image-text pairs -> entity-annotated images (I2E) -> image embeddings -> search."""
    try:
        ctx.obj = load_settings(config_file)
    except SettingsError as e:
        raise click.UsageError(str(e)) from None


@main.group()
def config() -> None:
    """Inspect the settings object."""


MASK = "********"


@config.command("show")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "env"]), default="table")
@click.option("--show-secrets", is_flag=True, help="Print credentials in clear (they are masked otherwise).")
@click.pass_obj
def config_show(settings, fmt: str, show_secrets: bool) -> None:
    """Print every setting with its value, environment variable and meaning; derived values are marked.

    Credentials (S3 keys, the Milvus token) are shown as ``********`` when set, unless ``--show-secrets``.
    """
    if not show_secrets:
        settings = copy.deepcopy(settings)
        for section, name in CREDENTIALS:
            if getattr(getattr(settings, section), name):
                setattr(getattr(settings, section), name, MASK)
    if fmt == "json":
        click.echo(json.dumps(settings.to_dict(), indent=2))
    elif fmt == "env":
        for key, value in settings.to_env().items():
            click.echo(f"{key}={value}")
    else:
        for section, name, value, doc in iter_fields(settings):
            shown = f"{value} (derived)" if getattr(settings, section).is_derived(name) else str(value)
            click.echo(f"{env_name(section, name):40} {shown:40} {doc}")


@main.command("protos")
def protos_cmd() -> None:
    """Regenerate mofi/v1 stubs from protos/ (the build does this)."""
    from mofi.protogen import generate

    for path in generate():
        click.echo(str(path))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
