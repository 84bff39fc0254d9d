"""Reader for Qt binary resource files (``.rcc``), the container GCompris ships its photos in.

Why our own reader: the Debian package holds compiled resources only, and no Python package reads
them. The format is small: a header, a tree of 14/22-byte nodes, a UTF-16 name table and a data
table whose entries may be zlib- or zstd-compressed.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = ["RccError", "RccEntry", "iter_rcc"]

_DIRECTORY = 0x02
_ZLIB = 0x01
_ZSTD = 0x04


class RccError(ValueError):
    """The bytes are not a Qt resource file this reader understands."""


@dataclass(frozen=True)
class RccEntry:
    path: str  # slash-separated path inside the resource tree, no leading slash
    data: bytes


def _name(blob: bytes, names: int, offset: int) -> str:
    start = names + offset
    (length,) = struct.unpack_from(">H", blob, start)
    return blob[start + 6 : start + 6 + 2 * length].decode("utf-16-be")


def _payload(blob: bytes, data: int, offset: int, flags: int) -> bytes:
    start = data + offset
    (size,) = struct.unpack_from(">I", blob, start)
    raw = blob[start + 4 : start + 4 + size]
    if flags & _ZLIB:
        return zlib.decompress(raw[4:])  # 4-byte big-endian uncompressed size precedes the stream
    if flags & _ZSTD:
        raise RccError("zstd-compressed resource (not supported)")
    return raw


def iter_rcc(blob: bytes) -> Iterator[RccEntry]:
    """Every file in the resource tree, depth first. Raises :class:`RccError` on a malformed header."""
    if blob[:4] != b"qres":
        raise RccError("missing 'qres' magic")
    version, tree, data, names = struct.unpack_from(">IIII", blob, 4)
    if version not in (1, 2, 3):
        raise RccError(f"unsupported rcc format version {version}")
    node_size = 14 if version == 1 else 22

    def walk(index: int, prefix: str) -> Iterator[RccEntry]:
        base = tree + index * node_size
        name_off, flags = struct.unpack_from(">IH", blob, base)
        name = _name(blob, names, name_off) if index else ""
        path = f"{prefix}/{name}".lstrip("/") if name else prefix
        if flags & _DIRECTORY:
            count, first = struct.unpack_from(">II", blob, base + 6)
            for child in range(first, first + count):
                yield from walk(child, path)
        else:
            (offset,) = struct.unpack_from(">I", blob, base + 10)
            try:
                yield RccEntry(path, _payload(blob, data, offset, flags))
            except (zlib.error, struct.error, RccError):
                return  # one unreadable member does not hide the others; the caller counts what it gets

    yield from walk(0, "")
