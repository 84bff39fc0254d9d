"""The WebDataset tar byte format that the raw corpus and the I2E dataset both store their shards in.

A shard is a plain tar whose members come in groups sharing a key: ``{key}.{ext}`` for each of a
sample's parts, one group after the other (the corpus and I2E write the image, then ``json``).
Members are written in the order given, USTAR, mode 0644, mtime 0, so the same samples always give
the same bytes (and the same sha256 in an I2E manifest).

Why not ``webdataset.TarWriter``: it writes a sample's parts sorted by extension, which puts
``json`` before ``png`` and breaks the image-then-json order that readers of existing shards rely
on, and importing the library pulls in torch, which the writer and corpus builder do not need.
"""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterable, Iterator, Sequence

__all__ = ["pack", "unpack"]


def pack(samples: Iterable[tuple[str, Sequence[tuple[str, bytes]]]]) -> bytes:
    """``(key, [(ext, data), ...])`` per sample -> the tar's bytes, members in the order given."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for key, parts in samples:
            for ext, data in parts:
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(data)
                info.mode = 0o644  # mtime stays 0: deterministic bytes
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def unpack(data: bytes) -> Iterator[tuple[str, dict[str, bytes]]]:
    """``(key, {ext: data})`` per run of consecutive regular members sharing a key, in tar order.

    The key is a member's name up to its last dot; other members (directories, links) are skipped.
    """
    key: str | None = None
    parts: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
        for member in tar:
            if not member.isfile():
                continue
            stem, _, ext = member.name.rpartition(".")
            if stem != key:
                if key is not None:
                    yield key, parts
                key, parts = stem, {}
            parts[ext] = tar.extractfile(member).read()  # type: ignore[union-attr]  # a regular file
    if key is not None:
        yield key, parts
