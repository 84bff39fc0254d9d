"""The I2E dataset format: WebDataset shards of images with their kept entities, and snapshots.

A shard is a tar under ``s3://<i2e_bucket>/shards/`` whose members come in pairs,
``{pair_id}.{png|jpg|webp}`` then ``{pair_id}.json``: pair id, alt-text, source, licence, original
path, scorer model, ``entities`` (the kept ones, best first: ``[{id, name, description, score,
link_score, method}]``; these are the labels) and ``dropped`` (the candidates the scorer dropped for
this image, best first: ``[{id, name, score}]``; shards written before it existed lack the key).
Beside it, ``<shard>.manifest.json`` is written *after* the tar ({shard, count, pair_ids, sha256,
entities summary of the kept entities, plus writer fields}).

Why a manifest: an S3 PUT is atomic per object, but a shard and its bookkeeping are two objects.
Readers treat a shard as existing only when its manifest exists, so a writer killed between the
two PUTs leaves an invisible tar (overwritten on retry) and never half a dataset. The manifest
also carries the per-shard entity counts, so a snapshot reads a few kilobytes per shard instead of
every image.

A :class:`Snapshot` freezes a set of complete shards into a versioned training dataset: the class
table (class index <-> KB entity id, name, description, image count) and a deterministic
train/val split by pair id.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import tarfile
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterable, Iterator

from mofi.objstore import ObjectStore, join_uri, parse_uri

__all__ = [
    "I2ESample",
    "EntityClass",
    "Snapshot",
    "I2EFormatError",
    "MANIFEST_SUFFIX",
    "IMAGE_EXTS",
    "manifest_uri",
    "shards_prefix",
    "write_shard",
    "read_manifest",
    "iter_shard",
    "list_shards",
    "split_of",
    "new_version",
    "snapshot_uri",
    "create_snapshot",
]

MANIFEST_SUFFIX = ".manifest.json"
IMAGE_EXTS = ("png", "jpg", "webp")
_PAIR_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")


class I2EFormatError(ValueError):
    """A sample or shard does not follow the I2E format; the message says which and why."""


@dataclass
class I2ESample:
    """One image with its metadata: ``meta`` is the shard's JSON member (see module docstring)."""

    pair_id: str
    image_bytes: bytes
    ext: str
    meta: dict[str, Any]

    def entity_ids(self) -> list[str]:
        return [e["id"] for e in self.meta.get("entities", [])]


@dataclass(frozen=True)
class EntityClass:
    """A row of a snapshot's class table: training class ``index`` is KB entity ``id``."""

    index: int
    id: str
    name: str
    description: str
    count: int


def shards_prefix(settings: Any) -> str:
    """Where the writer puts I2E shards: ``s3://<s3.i2e_bucket>/<writer.prefix>/``."""
    return join_uri(f"s3://{settings.s3.i2e_bucket}", settings.writer.prefix) + "/"


def manifest_uri(shard_uri: str) -> str:
    return shard_uri + MANIFEST_SUFFIX


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


def _add_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644  # mtime stays 0: the same samples always give the same bytes (and sha256)
    tar.addfile(info, io.BytesIO(data))


def _entity_summary(samples: Iterable[I2ESample]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for s in samples:
        for e in s.meta.get("entities", []):
            row = out.setdefault(e["id"], {"name": e["name"], "description": e["description"], "count": 0})
            row["count"] += 1
    return out


def write_shard(store: ObjectStore, uri: str, samples: list[I2ESample], extra: dict[str, Any] | None = None) -> dict:
    """Write the tar, then its manifest; returns the manifest.

    ``extra`` adds fields to the manifest (the writer records the Kafka offsets a shard covers, so a
    restarted writer knows what is already durable). Rewriting the same ``uri`` with a tar whose
    manifest does not exist yet is safe: nobody can have read it.
    """
    if not samples:
        raise I2EFormatError("a shard needs at least one sample")
    seen: set[str] = set()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for s in samples:
            ext = _check_sample(s)
            if s.pair_id in seen:
                raise I2EFormatError(f"pair {s.pair_id} appears twice in shard {uri}")
            seen.add(s.pair_id)
            meta = dict(s.meta, pair_id=s.pair_id)
            _add_member(tar, f"{s.pair_id}.{ext}", s.image_bytes)
            _add_member(tar, f"{s.pair_id}.json", json.dumps(meta, ensure_ascii=False, sort_keys=True).encode())
    data = buf.getvalue()
    store.put_bytes(uri, data, content_type="application/x-tar")
    manifest = {
        **(extra or {}),
        "shard": uri,
        "count": len(samples),
        "pair_ids": [s.pair_id for s in samples],
        "sha256": hashlib.sha256(data).hexdigest(),
        "entities": _entity_summary(samples),
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
    image: tuple[str, str, bytes] | None = None
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        for member in tar:
            key, _, ext = member.name.rpartition(".")
            fh = tar.extractfile(member)
            if fh is None:
                continue
            if ext == "json":
                if image is None or image[0] != key:
                    raise I2EFormatError(f"{uri}: {member.name} has no image member before it")
                yield I2ESample(pair_id=key, image_bytes=image[2], ext=image[1], meta=json.loads(fh.read()))
                image = None
            elif ext in IMAGE_EXTS:
                image = (key, ext, fh.read())
            else:
                raise I2EFormatError(f"{uri}: unexpected member {member.name}")


def list_shards(store: ObjectStore, prefix_uri: str) -> list[str]:
    """Complete shards (tar and manifest both present) under a prefix, sorted by key."""
    keys = set(store.list(prefix_uri))
    return sorted(k for k in keys if k.endswith(".tar") and manifest_uri(k) in keys)


def split_of(pair_id: str, val_percent: float) -> str:
    """"train" or "val" from a hash of the pair id alone.

    Why not seeded per snapshot: a pair stays on the same side in every snapshot, so a model trained
    on an older snapshot is never evaluated on its own training images in a newer one.
    """
    bucket = int.from_bytes(hashlib.sha1(pair_id.encode()).digest()[:4], "big") % 10000
    return "val" if bucket < val_percent * 100 else "train"


@dataclass
class Snapshot:
    """A frozen, versioned I2E training dataset (stored as JSON at ``snapshot_uri``)."""

    version: str
    created: str
    shards: list[str]
    classes: list[EntityClass]
    val_percent: float
    num_samples: int
    min_count: int = 1
    shard_sha256: dict[str, str] = field(default_factory=dict)

    def split_of(self, pair_id: str) -> str:
        return split_of(pair_id, self.val_percent)

    def class_index(self) -> dict[str, int]:
        return {c.id: c.index for c in self.classes}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Snapshot":
        d = dict(d)
        d["classes"] = [EntityClass(**c) for c in d["classes"]]
        return cls(**d)

    def save(self, store: ObjectStore, uri: str) -> None:
        store.put_bytes(uri, json.dumps(self.to_dict(), indent=1, ensure_ascii=False).encode(),
                        content_type="application/json")

    @classmethod
    def load(cls, store: ObjectStore, uri: str) -> "Snapshot":
        return cls.from_dict(json.loads(store.get_bytes(uri)))


def new_version(now: datetime | None = None) -> str:
    """A sortable version name, e.g. ``20261129T002500Z``."""
    return (now or datetime.now(timezone.utc)).strftime("%Y%m%dT%H%M%SZ")


def snapshot_uri(i2e_bucket: str, version: str) -> str:
    return f"s3://{i2e_bucket}/snapshots/{version}/manifest.json"


def _version_from_uri(uri: str) -> str:
    _, key = parse_uri(uri)
    parts = key.rstrip("/").split("/")
    return parts[-2] if len(parts) >= 2 and parts[-1] == "manifest.json" else parts[-1].rsplit(".", 1)[0]


def create_snapshot(store: ObjectStore, i2e_prefix_uri: str, snapshot_uri: str, min_count: int,
                    val_percent: float) -> Snapshot:
    """Freeze every complete shard under ``i2e_prefix_uri`` into a snapshot and save it.

    Classes are the entities with at least ``min_count`` images, ordered by count (then id) so the
    most frequent entity is class 0. A pair id found in more than one shard is counted once.
    The version is the folder of ``snapshot_uri`` (``.../snapshots/<version>/manifest.json``).
    """
    if min_count < 1:
        raise ValueError("min_count must be >= 1")
    if not 0 <= val_percent < 100:
        raise ValueError("val_percent must be in [0, 100)")
    shards = list_shards(store, i2e_prefix_uri)
    seen: set[str] = set()
    counts: dict[str, dict[str, Any]] = {}
    sha: dict[str, str] = {}
    for uri in shards:
        m = read_manifest(store, uri)
        sha[uri] = m["sha256"]
        fresh = [p for p in m["pair_ids"] if p not in seen]
        seen.update(fresh)
        if len(fresh) != len(m["pair_ids"]):  # rare: re-read the shard to count only its new pairs
            fresh_set = set(fresh)
            rows = _entity_summary(s for s in iter_shard(store, uri) if s.pair_id in fresh_set)
        else:
            rows = m["entities"]
        for eid, row in rows.items():
            agg = counts.setdefault(eid, {"name": row["name"], "description": row["description"], "count": 0})
            agg["count"] += row["count"]
    kept = sorted(((r["count"], eid) for eid, r in counts.items() if r["count"] >= min_count),
                  key=lambda t: (-t[0], t[1]))
    classes = [EntityClass(i, eid, counts[eid]["name"], counts[eid]["description"], n) for i, (n, eid) in enumerate(kept)]
    snap = Snapshot(
        version=_version_from_uri(snapshot_uri),
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        shards=shards,
        classes=classes,
        val_percent=float(val_percent),
        num_samples=len(seen),
        min_count=min_count,
        shard_sha256=sha,
    )
    snap.save(store, snapshot_uri)
    return snap
