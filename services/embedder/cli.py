"""``mofi index`` and ``mofi search``: build the image index and query it from the command line."""

from __future__ import annotations

from pathlib import Path

import click

from mofi.i2e import shards_prefix
from mofi.objstore import ObjectStore
from mofi_platform.services.common.errors import InvalidInput
from mofi_platform.services.common.images import decode_image

__all__ = ["index", "search"]


@click.command()
@click.option(
    "--i2e", "i2e_prefix", default=None, help="I2E shard prefix (default s3://<s3.i2e_bucket>/<writer.prefix>/)."
)
@click.option(
    "--images",
    "image_dir",
    type=click.Path(exists=True, file_okay=False),
    default=None,
    help="Index a folder of images instead of I2E shards.",
)
@click.option("--checkpoint", default=None, help="Model checkpoint (default embedder.checkpoint).")
@click.option("--batch-size", default=64, show_default=True, type=click.IntRange(min=1))
@click.option("--no-thumbnails", is_flag=True, help="Do not store thumbnails (smaller index, no contact sheets).")
@click.pass_obj
def index(
    settings,
    i2e_prefix: str | None,
    image_dir: str | None,
    checkpoint: str | None,
    batch_size: int,
    no_thumbnails: bool,
) -> None:
    """Embed images into a new collection version, then switch the alias (milvus.collection) to it."""
    from mofi_platform.services.embedder.indexing import index_images, items_from_dir, items_from_i2e

    if image_dir:
        items = items_from_dir(image_dir)
    else:
        prefix = i2e_prefix or shards_prefix(settings)
        items = items_from_i2e(ObjectStore(settings.s3), prefix)
    report = index_images(settings, items, checkpoint, batch_size=batch_size, thumbnails=not no_thumbnails)
    click.echo(
        f"indexed {report.indexed} images into {report.collection}; alias {settings.milvus.collection} -> "
        f"{report.collection}; skipped {len(report.skipped)}"
    )
    for pair_id, reason in report.skipped:
        click.echo(f"  skipped {pair_id}: {reason}", err=True)
    if report.indexed == 0:
        raise click.ClickException("no image was indexed")


@click.command()
@click.argument("query", required=False)
@click.option(
    "--image",
    "image_path",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Search by this image instead of text.",
)
@click.option("-k", "--top-k", default=10, show_default=True, type=click.IntRange(min=1))
@click.option("--entity", default="", help="Only images labelled with this entity id.")
@click.option("--source", default="", help="Only images from this source.")
@click.option("--collection", default="", help="Alias or collection (default milvus.collection).")
@click.option("--checkpoint", default=None, help="Model checkpoint (default embedder.checkpoint).")
@click.option(
    "--contact-sheet", "sheet_path", type=click.Path(dir_okay=False), default=None, help="Save the hits as a PNG grid."
)
@click.pass_obj
def search(
    settings,
    query: str | None,
    image_path: str | None,
    top_k: int,
    entity: str,
    source: str,
    collection: str,
    checkpoint: str | None,
    sheet_path: str | None,
) -> None:
    """Search the image index by text (QUERY) or by --image; prints rank, score, pair id, entities."""
    from mofi_platform.services.embedder.contact_sheet import contact_sheet
    from mofi_platform.services.embedder.models import IMAGE, TEXT
    from mofi_platform.services.embedder.resources import load_holder, open_vectors
    from mofi_platform.services.embedder.vectors import BadQuery, UnknownCollection

    if bool(query) == bool(image_path):
        raise click.UsageError("give a text QUERY or --image, exactly one")
    if top_k > settings.embedder.max_top_k:
        raise click.UsageError(f"--top-k exceeds embedder.max_top_k ({settings.embedder.max_top_k})")
    if image_path:
        try:
            item = (
                IMAGE,
                decode_image(
                    Path(image_path).read_bytes(), settings.embedder.max_image_bytes, settings.embedder.max_pixels
                ),
            )
        except InvalidInput as e:
            raise click.ClickException(f"{image_path}: {e.reason}") from None
    else:
        item = (TEXT, query)
    holder = load_holder(settings, checkpoint)
    (embedded,) = holder.embed_batch([item])
    try:
        concrete, hits = open_vectors(settings).search(
            embedded.vector, top_k, collection, entity, source, with_thumbnails=bool(sheet_path)
        )
    except (UnknownCollection, BadQuery) as e:
        raise click.ClickException(str(e)) from None
    click.echo(f"{len(hits)} hits from {concrete} (model {embedded.version})")
    for rank, h in enumerate(hits, 1):
        click.echo(
            f"{rank:3d}  {h.score:.4f}  {h.pair_id}  {h.source}  {', '.join(h.entity_names) or '-'}  {h.text[:60]}"
        )
    if sheet_path:
        contact_sheet(hits, title=query or Path(image_path).name).save(sheet_path)
        click.echo(f"contact sheet: {sheet_path}")
