"""The raw corpus: WebDataset tar shards (:mod:`mofi.tarshard`) of ``{pair_id}.{png|jpg}`` + ``{pair_id}.json``.

Why WebDataset tar: one object per few hundred pairs streams from S3 sequentially, any tar tool
can inspect it, and training and `mofi produce` read it without an index. Shards are written whole
(object-store PUT), so a reader never sees a half-written shard.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from mofi.objstore import ObjectStore, join_uri
from mofi.tarshard import pack, unpack

__all__ = [
    "CorpusSample",
    "ShardWriter",
    "iter_corpus",
    "list_corpus_shards",
    "shards_prefix",
    "MIME_BY_EXT",
    "SHARD_DIR",
]

MIME_BY_EXT = {"png": "image/png", "jpg": "image/jpeg"}
SHARD_DIR = "shards"


@dataclass(frozen=True)
class CorpusSample:
    pair_id: str
    text: str
    source: str
    licence: str
    original_path: str
    image_bytes: bytes
    mime: str

    def meta(self, width: int, height: int) -> dict:
        return {
            "pair_id": self.pair_id,
            "text": self.text,
            "source": self.source,
            "licence": self.licence,
            "original_path": self.original_path,
            "width": width,
            "height": height,
        }


def shards_prefix(corpus_uri: str) -> str:
    """Where the corpus under ``corpus_uri`` (``s3://<s3.corpus_bucket>`` by default) keeps its shards."""
    return join_uri(corpus_uri, SHARD_DIR) + "/"


def default_shards_prefix(s3: Any) -> str:
    """The shards of the corpus in the configured corpus bucket (``s3`` is the ``s3`` settings section)."""
    return shards_prefix(f"s3://{s3.corpus_bucket}")


class ShardWriter:
    """Buffers samples and writes ``<prefix>/shards/<name>-NNNNN.tar`` every ``shard_size`` samples."""

    def __init__(self, store: ObjectStore, prefix_uri: str, name: str, shard_size: int) -> None:
        self.store, self.prefix, self.name, self.shard_size = store, prefix_uri, name, shard_size
        self._samples: list[tuple[str, list[tuple[str, bytes]]]] = []
        self.shards: list[str] = []

    def add(self, sample: CorpusSample, width: int, height: int) -> None:
        ext = "png" if sample.mime == "image/png" else "jpg"
        meta = json.dumps(sample.meta(width, height), ensure_ascii=False).encode()
        self._samples.append((sample.pair_id, [(ext, sample.image_bytes), ("json", meta)]))
        if len(self._samples) >= self.shard_size:
            self.flush()

    def flush(self) -> None:
        if not self._samples:
            return
        uri = f"{shards_prefix(self.prefix)}{self.name}-{len(self.shards):05d}.tar"
        self.store.put_bytes(uri, pack(self._samples), "application/x-tar")
        self.shards.append(uri)
        self._samples = []

    def close(self) -> list[str]:
        self.flush()
        return self.shards


def list_corpus_shards(store: ObjectStore, prefix_uri: str) -> list[str]:
    return [u for u in store.list(prefix_uri) if u.endswith(".tar")]


def _samples(tar_bytes: bytes) -> Iterator[CorpusSample]:
    for _, parts in unpack(tar_bytes):
        image = next(((data, MIME_BY_EXT[ext]) for ext, data in parts.items() if ext in MIME_BY_EXT), None)
        if image is not None and "json" in parts:
            meta = json.loads(parts["json"])
            yield CorpusSample(
                meta["pair_id"], meta["text"], meta["source"], meta["licence"], meta["original_path"], *image
            )


def iter_corpus(store: ObjectStore, prefix_uri: str) -> Iterator[CorpusSample]:
    """Every sample of every ``.tar`` shard under the prefix (other objects, e.g. the KB, are ignored)."""
    for uri in list_corpus_shards(store, prefix_uri):
        yield from _samples(store.get_bytes(uri))
