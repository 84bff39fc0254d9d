"""`mofi objstore get URI PATH`: copy one object to a local file (see mofi.objstore).

Why a command: a pod that only needs a file from object storage before its main container starts (the NER
pods' knowledge base) runs this in an init container with the pod's settings and credentials, instead of
inline Python in the chart. A missing object fails the command with a message naming it.
"""

from __future__ import annotations

import click
from minio.error import S3Error

from mofi.objstore import ObjectStore, is_missing

__all__ = ["objstore"]


@click.group()
def objstore() -> None:
    """Objects named by URI: s3://bucket/key (MinIO/S3 from the settings) or a local path."""


@objstore.command()
@click.argument("uri")
@click.argument("path", type=click.Path(dir_okay=False, writable=True))
@click.pass_obj
def get(settings, uri: str, path: str) -> None:
    """Copy the object at URI to the local file PATH (its folder must exist)."""
    try:
        ObjectStore(settings.s3).get_file(uri, path)
    except S3Error as e:
        if not is_missing(e):
            raise
        raise click.ClickException(f"no object at {uri} ({e.code})") from None
    except FileNotFoundError:
        raise click.ClickException(f"no file at {uri}") from None
    click.echo(f"{uri} -> {path}")
