"""The raw corpus: WebDataset-style tar shards of ``{pair_id}.{png|jpg}`` + ``{pair_id}.json``.

Why WebDataset tar: one object per few hundred pairs streams from S3 sequentially, any tar tool
can inspect it, and training and `mofi produce` read it without an index. Shards are written whole
(object-store PUT), so a reader never sees a half-written shard.
"""

from __future__ import annotations

import io
import json
import tarfile
from dataclasses import dataclass
from typing import Iterator

from mofi.objstore import ObjectStore, join_uri

__all__ = ["CorpusSample", "ShardWriter", "iter_corpus", "list_corpus_shards", "MIME_BY_EXT", "SHARD_DIR"]

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
        return {"pair_id": self.pair_id, "text": self.text, "source": self.source, "licence": self.licence,
                "original_path": self.original_path, "width": width, "height": height}


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 0  # deterministic shards: same input, same bytes
    tar.addfile(info, io.BytesIO(data))


class ShardWriter:
    """Buffers samples and writes ``<prefix>/shards/<name>-NNNNN.tar`` every ``shard_size`` samples."""

    def __init__(self, store: ObjectStore, prefix_uri: str, name: str, shard_size: int) -> None:
        self.store, self.prefix, self.name, self.shard_size = store, prefix_uri, name, shard_size
        self._buf = io.BytesIO()
        self._tar = tarfile.open(fileobj=self._buf, mode="w")
        self._count = 0
        self.shards: list[str] = []

    def add(self, sample: CorpusSample, width: int, height: int) -> None:
        ext = "png" if sample.mime == "image/png" else "jpg"
        _add(self._tar, f"{sample.pair_id}.{ext}", sample.image_bytes)
        _add(self._tar, f"{sample.pair_id}.json", json.dumps(sample.meta(width, height), ensure_ascii=False).encode())
        self._count += 1
        if self._count >= self.shard_size:
            self.flush()

    def flush(self) -> None:
        if not self._count:
            return
        self._tar.close()
        uri = join_uri(self.prefix, SHARD_DIR, f"{self.name}-{len(self.shards):05d}.tar")
        self.store.put_bytes(uri, self._buf.getvalue(), "application/x-tar")
        self.shards.append(uri)
        self._buf = io.BytesIO()
        self._tar = tarfile.open(fileobj=self._buf, mode="w")
        self._count = 0

    def close(self) -> list[str]:
        self.flush()
        return self.shards


def list_corpus_shards(store: ObjectStore, prefix_uri: str) -> list[str]:
    return [u for u in store.list(prefix_uri) if u.endswith(".tar")]


def _samples(tar_bytes: bytes) -> Iterator[CorpusSample]:
    images: dict[str, tuple[bytes, str]] = {}
    metas: dict[str, dict] = {}
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tar:
        for member in tar:
            if not member.isfile():
                continue
            stem, _, ext = member.name.rpartition(".")
            data = tar.extractfile(member).read()
            if ext == "json":
                metas[stem] = json.loads(data)
            elif ext in MIME_BY_EXT:
                images[stem] = (data, MIME_BY_EXT[ext])
    for stem, meta in metas.items():
        if stem in images:
            data, mime = images[stem]
            yield CorpusSample(meta["pair_id"], meta["text"], meta["source"], meta["licence"], meta["original_path"], data, mime)


def iter_corpus(store: ObjectStore, prefix_uri: str) -> Iterator[CorpusSample]:
    """Every sample of every ``.tar`` shard under the prefix (other objects, e.g. the KB, are ignored)."""
    for uri in list_corpus_shards(store, prefix_uri):
        yield from _samples(store.get_bytes(uri))
