"""`mofi stack up|down|status`: the local Kafka-protocol broker and S3 server (see mofi.stack)."""

from __future__ import annotations

import click

from mofi.stack import Stack, StackError

__all__ = ["stack"]


@click.group()
def stack() -> None:
    """Run the local stack: a Kafka-protocol broker and an S3 server on 127.0.0.1."""


def _print(statuses) -> None:
    for s in statuses:
        click.echo(s.line())


@stack.command()
@click.pass_obj
def up(settings) -> None:
    """Start whichever server is not answering (healthy ones are left alone) and wait until both answer."""
    try:
        _print(Stack(settings).up())
    except StackError as e:
        raise click.ClickException(str(e)) from None
    click.echo(f"milvus  milvus-lite file {settings.milvus.uri} (in-process, no server)")


@stack.command()
@click.pass_obj
def down(settings) -> None:
    """Stop both servers (broker first) and remove their PID files."""
    Stack(settings).down()
    click.echo("stack stopped")


@stack.command()
@click.pass_obj
def status(settings) -> None:
    """Show whether each server runs and answers; exit 1 unless both are healthy."""
    st = Stack(settings).status()
    _print(st)
    if not all(s.healthy for s in st):
        raise SystemExit(1)
