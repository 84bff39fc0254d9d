"""Images -> index rows -> a new collection version, in batches with progress.

Sources: complete I2E shards under a prefix (entities from the scorer) or any folder of images
(no entities; the file name is the text). Rows keep a small JPEG thumbnail so ``mofi search`` can
draw a contact sheet without going back to the object store.
"""

from __future__ import annotations

import base64
import hashlib
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image
from tqdm import tqdm

from mofi.i2e import iter_shard, list_shards
from mofi.images import thumbnail_jpeg
from mofi.objstore import ObjectStore
from mofi_platform.services.common.errors import InvalidInput
from mofi_platform.services.common.images import decode_image
from mofi_platform.services.embedder.models import ModelHolder
from mofi_platform.services.embedder.resources import load_holder, open_vectors
from mofi_platform.services.embedder.vectors import IndexRow, VectorStore

__all__ = ["ImageItem", "items_from_i2e", "items_from_dir", "rows_for", "build_index", "index_images", "IndexReport"]

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp"}
THUMB_SIDE = 96


@dataclass
class ImageItem:
    """An encoded image with the metadata the index keeps."""

    pair_id: str
    image_bytes: bytes
    entity_ids: list[str] = field(default_factory=list)
    entity_names: list[str] = field(default_factory=list)
    source: str = ""
    text: str = ""


@dataclass
class IndexReport:
    collection: str
    indexed: int
    skipped: list[tuple[str, str]]  # (pair id, reason) of images that could not be decoded


def items_from_i2e(store: ObjectStore, prefix_uri: str) -> Iterator[ImageItem]:
    """Every sample of every complete shard under ``prefix_uri``."""
    for shard in list_shards(store, prefix_uri):
        for s in iter_shard(store, shard):
            entities = s.meta.get("entities", [])
            yield ImageItem(
                s.pair_id,
                s.image_bytes,
                [e["id"] for e in entities],
                [e["name"] for e in entities],
                s.meta.get("source", ""),
                s.meta.get("text", ""),
            )


def items_from_dir(folder: str | Path, source: str = "") -> Iterator[ImageItem]:
    """Image files under ``folder`` (recursive, sorted); pair id as the corpus derives it."""
    root = Path(folder)
    source = source or root.name
    for path in sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES):
        rel = path.relative_to(root).as_posix()
        pair_id = hashlib.sha1(f"{source}:{rel}".encode()).hexdigest()[:16]
        yield ImageItem(pair_id, path.read_bytes(), source=source, text=path.stem.replace("_", " "))


def _thumbnail_b64(image: Image.Image) -> str:
    return base64.b64encode(thumbnail_jpeg(image, THUMB_SIDE, quality=80)).decode()


def rows_for(
    holder: ModelHolder, items: list[ImageItem], decode: Callable[[bytes], Image.Image], thumbnails: bool = True
) -> tuple[list[IndexRow], list[tuple[str, str]]]:
    """Embed a batch; an undecodable image is skipped with its reason, never fatal."""
    good: list[tuple[ImageItem, Image.Image]] = []
    skipped = []
    for item in items:
        try:
            good.append((item, decode(item.image_bytes)))
        except InvalidInput as e:
            skipped.append((item.pair_id, e.reason))
    embedded = holder.embed_images([im for _, im in good])
    rows = [
        IndexRow(
            item.pair_id,
            e.vector,
            item.entity_ids,
            item.entity_names,
            item.source,
            item.text,
            e.version,
            _thumbnail_b64(im) if thumbnails else "",
        )
        for (item, im), e in zip(good, embedded)
    ]
    return rows, skipped


def _batches(items: Iterable[ImageItem], size: int) -> Iterator[list[ImageItem]]:
    batch: list[ImageItem] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def build_index(
    holder: ModelHolder,
    vectors: VectorStore,
    items: Iterable[ImageItem],
    *,
    batch_size: int = 64,
    max_image_bytes: int = 8 * 1024 * 1024,
    max_pixels: int = 40_000_000,
    thumbnails: bool = True,
    total: int | None = None,
) -> IndexReport:
    """Index ``items`` into a new collection version and switch the alias to it once complete."""
    collection = vectors.new_collection(holder.dim, holder.version, holder.uri)
    indexed, skipped = 0, []
    try:
        with tqdm(total=total, desc=f"index {collection}", unit="img", disable=None) as bar:
            for batch in _batches(items, batch_size):
                rows, bad = rows_for(holder, batch, lambda b: decode_image(b, max_image_bytes, max_pixels), thumbnails)
                vectors.insert(collection, rows)
                indexed += len(rows)
                skipped.extend(bad)
                bar.update(len(batch))
    except BaseException:
        vectors.client.drop_collection(collection)  # never leave a half-built version behind
        raise
    for pair_id, reason in skipped:
        log.warning("skipped %s: %s", pair_id, reason)
    vectors.publish(collection)
    return IndexReport(collection, indexed, skipped)


def index_images(
    settings,
    items: Iterable[ImageItem],
    checkpoint: str | None = None,
    *,
    batch_size: int = 64,
    thumbnails: bool = True,
    total: int | None = None,
) -> IndexReport:
    """:func:`build_index` with the model, Milvus and image limits the settings name.

    ``mofi index`` and the pipeline's index step both come through here.
    """
    vectors = open_vectors(settings)
    try:
        return build_index(
            load_holder(settings, checkpoint),
            vectors,
            items,
            batch_size=batch_size,
            max_image_bytes=settings.embedder.max_image_bytes,
            max_pixels=settings.embedder.max_pixels,
            thumbnails=thumbnails,
            total=total,
        )
    finally:
        vectors.close()
