"""I2E shards: the samples of one tar (:mod:`mofi.tarshard` format) and the manifest that makes it visible.

Why a manifest: an S3 PUT is atomic per object, but a shard and its bookkeeping are two objects.
Readers treat a shard as existing only when its manifest exists, so a writer killed between the
two PUTs leaves an invisible tar (overwritten on retry) and never half a dataset. The manifest
also carries the per-shard entity counts, so a snapshot reads a few kilobytes per shard instead of
every image.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from mofi.i2e.layout import manifest_uri
from mofi.objstore import ObjectStore
from mofi.tarshard import pack, unpack

__all__ = [
    "I2ESample",
    "I2EFormatError",
    "IMAGE_EXTS",
    "write_shard",
    "read_manifest",
    "iter_shard",
    "list_shards",
    "entity_summary",
]

IMAGE_EXTS = ("png", "jpg", "webp")
_PAIR_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")


class I2EFormatError(ValueError):
    """A sample or shard does not follow the I2E format; the message says which and why."""


@dataclass
class I2ESample:
    """One image with its metadata: ``meta`` is the shard's JSON member (see :mod:`mofi.i2e`)."""

    pair_id: str
    image_bytes: bytes
    ext: str
    meta: dict[str, Any]

    def entity_ids(self) -> list[str]:
        return [e["id"] for e in self.meta.get("entities", [])]


def _check_sample(s: I2ESample) -> str:
    if not _PAIR_ID.match(s.pair_id):
        raise I2EFormatError(f"pair id {s.pair_id!r} is not a safe tar member name ([A-Za-z0-9_-]+)")
    ext = "jpg" if s.ext.lower() == "jpeg" else s.ext.lower()
    if ext not in IMAGE_EXTS:
        raise I2EFormatError(f"pair {s.pair_id}: image extension {s.ext!r} is not one of {IMAGE_EXTS}")
    if not s.image_bytes:
        raise I2EFormatError(f"pair {s.pair_id}: empty image")
    for e in s.meta.get("entities", []):
        missing = {"id", "name", "description", "score"} - set(e)
        if missing:
            raise I2EFormatError(f"pair {s.pair_id}: entity {e!r} lacks {sorted(missing)}")
    return ext


def entity_summary(samples: Iterable[I2ESample]) -> dict[str, dict[str, Any]]:
    """``{entity id: {name, description, count}}`` over the kept entities of ``samples``."""
    out: dict[str, dict[str, Any]] = {}
    for s in samples:
        for e in s.meta.get("entities", []):
            row = out.setdefault(e["id"], {"name": e["name"], "description": e["description"], "count": 0})
            row["count"] += 1
    return out


def _members(uri: str, samples: list[I2ESample]) -> Iterator[tuple[str, list[tuple[str, bytes]]]]:
    seen: set[str] = set()
    for s in samples:
        ext = _check_sample(s)
        if s.pair_id in seen:
            raise I2EFormatError(f"pair {s.pair_id} appears twice in shard {uri}")
        seen.add(s.pair_id)
        meta = json.dumps(dict(s.meta, pair_id=s.pair_id), ensure_ascii=False, sort_keys=True).encode()
        yield s.pair_id, [(ext, s.image_bytes), ("json", meta)]


def write_shard(store: ObjectStore, uri: str, samples: list[I2ESample], extra: dict[str, Any] | None = None) -> dict:
    """Write the tar, then its manifest; returns the manifest.

    ``extra`` adds fields to the manifest (the writer records the Kafka offsets a shard covers, so a
    restarted writer knows what is already durable). Rewriting the same ``uri`` with a tar whose
    manifest does not exist yet is safe: nobody can have read it.
    """
    if not samples:
        raise I2EFormatError("a shard needs at least one sample")
    data = pack(_members(uri, samples))
    store.put_bytes(uri, data, content_type="application/x-tar")
    manifest = {
        **(extra or {}),
        "shard": uri,
        "count": len(samples),
        "pair_ids": [s.pair_id for s in samples],
        "sha256": hashlib.sha256(data).hexdigest(),
        "entities": entity_summary(samples),
    }
    store.put_bytes(manifest_uri(uri), json.dumps(manifest, sort_keys=True).encode(), content_type="application/json")
    return manifest


def read_manifest(store: ObjectStore, shard_uri: str) -> dict:
    return json.loads(store.get_bytes(manifest_uri(shard_uri)))


def iter_shard(store: ObjectStore, uri: str, verify: bool = False) -> Iterator[I2ESample]:
    """Samples of one shard in order; ``verify`` checks the tar against its manifest's sha256 first."""
    data = store.get_bytes(uri)
    if verify:
        want = read_manifest(store, uri)["sha256"]
        if hashlib.sha256(data).hexdigest() != want:
            raise I2EFormatError(f"{uri}: sha256 does not match its manifest")
    for key, parts in unpack(data):
        unexpected = sorted(set(parts) - {"json", *IMAGE_EXTS})
        if unexpected:
            raise I2EFormatError(f"{uri}: unexpected member {key}.{unexpected[0]}")
        images = [ext for ext in parts if ext in IMAGE_EXTS]
        if "json" not in parts:
            continue  # an image without its metadata is not a sample
        if not images:
            raise I2EFormatError(f"{uri}: {key}.json has no image member before it")
        yield I2ESample(pair_id=key, image_bytes=parts[images[-1]], ext=images[-1], meta=json.loads(parts["json"]))


def list_shards(store: ObjectStore, prefix_uri: str) -> list[str]:
    """Complete shards (tar and manifest both present) under a prefix, sorted by key."""
    keys = set(store.list(prefix_uri))
    return sorted(k for k in keys if k.endswith(".tar") and manifest_uri(k) in keys)
