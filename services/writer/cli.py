"""`mofi i2e snapshot|shards`: freeze the written I2E shards into a versioned training dataset."""

from __future__ import annotations

import click

from mofi.i2e import create_snapshot, list_shards, new_version, shards_prefix, snapshot_uri
from mofi.objstore import ObjectStore

__all__ = ["i2e"]


@click.group()
def i2e() -> None:
    """The I2E dataset in the object store."""


@i2e.command("shards")
@click.pass_obj
def shards_cmd(settings) -> None:
    """List complete shards (those whose manifest exists)."""
    for uri in list_shards(ObjectStore(settings.s3), shards_prefix(settings)):
        click.echo(uri)


@i2e.command("snapshot")
@click.option(
    "--min-count",
    type=click.IntRange(min=1),
    default=3,
    show_default=True,
    help="Entities with fewer images are not classes.",
)
@click.option("--val-percent", type=click.FloatRange(0, 100, max_open=True), default=5.0, show_default=True)
@click.option("--version", "version", default=None, help="Snapshot version (default: UTC timestamp).")
@click.pass_obj
def snapshot_cmd(settings, min_count: int, val_percent: float, version: str | None) -> None:
    """Freeze the current shards into s3://<i2e_bucket>/snapshots/<version>/manifest.json."""
    store = ObjectStore(settings.s3)
    uri = snapshot_uri(settings.s3.i2e_bucket, version or new_version())
    if store.exists(uri):
        raise click.ClickException(f"{uri} exists: snapshots are immutable, choose another --version")
    if not list_shards(store, shards_prefix(settings)):
        raise click.ClickException(f"no complete shards under {shards_prefix(settings)}")
    snap = create_snapshot(store, shards_prefix(settings), uri, min_count=min_count, val_percent=val_percent)
    click.echo(
        f"{uri}: version {snap.version}, {len(snap.shards)} shards, {snap.num_samples} samples, "
        f"{len(snap.classes)} classes (min count {min_count}), val {val_percent}%"
    )
