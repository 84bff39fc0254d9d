"""`mofi serve <name>`, `mofi stage <name>`, `mofi up`: run services and Kafka stages by name.

Why a registry of "module:function" strings: each service package plugs in by defining
``serve_main(settings)`` / ``stage_main(settings)`` in its ``app`` module, and nothing heavy
(torch, spaCy) is imported until the chosen one starts.
"""

from __future__ import annotations

import importlib
import os
import signal
import subprocess
import sys
import time

import click

__all__ = ["serve", "stage", "up", "SERVERS", "STAGES", "resolve"]

SERVERS = {
    "ner": "mofi_platform.services.ner.app:serve_main",
    "scorer": "mofi_platform.services.scorer.app:serve_main",
    "embedder": "mofi_platform.services.embedder.app:serve_main",
}
STAGES = {
    "ner": "mofi_platform.services.ner.app:stage_main",
    "scorer": "mofi_platform.services.scorer.app:stage_main",
    "writer": "mofi_platform.services.writer.app:stage_main",
    "indexer": "mofi_platform.services.embedder.app:stage_main",
}


def resolve(target: str):
    """ "package.module:function" -> the function."""
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def _run(registry: dict[str, str], name: str, settings) -> None:
    try:
        main = resolve(registry[name])
    except (ImportError, AttributeError) as e:
        raise click.ClickException(f"{name} cannot start: {e}") from None
    main(settings)


@click.command()
@click.argument("name", type=click.Choice(sorted(SERVERS)))
@click.pass_obj
def serve(settings, name: str) -> None:
    """Run a gRPC service until SIGTERM/SIGINT (then drain in-flight calls)."""
    _run(SERVERS, name, settings)


@click.command()
@click.argument("name", type=click.Choice(sorted(STAGES)))
@click.pass_obj
def stage(settings, name: str) -> None:
    """Run a Kafka stage until SIGTERM/SIGINT."""
    _run(STAGES, name, settings)


@click.command()
@click.option("--only", multiple=True, help="Start only these stages (default: ner, scorer, writer).")
@click.pass_obj
def up(settings, only: tuple[str, ...]) -> None:
    """Run the I2E pipeline stages as child processes with the current settings; Ctrl-C stops them all."""
    names = list(only) or ["ner", "scorer", "writer"]
    unknown = [n for n in names if n not in STAGES]
    if unknown:
        raise click.UsageError(f"unknown stage(s) {unknown}; choose from {sorted(STAGES)}")
    env = {**os.environ, **settings.to_env()}
    procs = {n: subprocess.Popen([sys.executable, "-m", "mofi.cli", "stage", n], env=env) for n in names}
    click.echo(f"started {', '.join(f'{n} (pid {p.pid})' for n, p in procs.items())}")
    try:
        while all(p.poll() is None for p in procs.values()):
            time.sleep(1)
        failed = {n: p.returncode for n, p in procs.items() if p.poll() is not None}
        click.echo(f"stage exited: {failed}; stopping the others", err=True)
    except KeyboardInterrupt:
        pass
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs.values():
            p.wait()
