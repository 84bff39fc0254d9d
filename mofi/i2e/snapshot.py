"""I2E snapshots: a set of complete shards frozen into a versioned training dataset.

A :class:`Snapshot` holds the class table (class index <-> KB entity id, name, description, image
count) and a deterministic train/val split by pair id; it is stored as JSON at
:func:`mofi.i2e.layout.snapshot_uri`.

Why a knowledge base may be passed: records written before the KB had same-as links carry alias ids
(``emoji:1f405`` for the tiger); with the KB, classes are canonical ids and ``same_as`` keeps the alias
ids seen, so a sample labelled with either id trains the one class.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from mofi.i2e.layout import snapshot_version
from mofi.i2e.shards import entity_summary, iter_shard, list_shards, read_manifest
from mofi.kb import KnowledgeBase
from mofi.objstore import ObjectStore

__all__ = ["EntityClass", "Snapshot", "split_of", "new_version", "create_snapshot"]


@dataclass(frozen=True)
class EntityClass:
    """A row of a snapshot's class table: training class ``index`` is KB entity ``id``."""

    index: int
    id: str
    name: str
    description: str
    count: int


def split_of(pair_id: str, val_percent: float) -> str:
    """ "train" or "val" from a hash of the pair id alone.

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
    same_as: dict[str, str] = field(default_factory=dict)  # alias id in the shards -> canonical class id

    def split_of(self, pair_id: str) -> str:
        return split_of(pair_id, self.val_percent)

    def class_index(self) -> dict[str, int]:
        """Entity id -> class index, alias ids included."""
        index = {c.id: c.index for c in self.classes}
        index.update({alias: index[canonical] for alias, canonical in self.same_as.items() if canonical in index})
        return index

    def most_frequent(self, fraction: float) -> Snapshot:
        """This snapshot with only the most frequent ``fraction`` of its classes (at least one); the class
        table is ordered by count, so indices stay as they are. Images with none of the kept classes
        drop out of class-supervised training."""
        if not 0 < fraction <= 1:
            raise ValueError(f"class fraction must be in (0, 1], got {fraction}")
        keep = self.classes[: max(1, math.ceil(fraction * len(self.classes)))]
        ids = {c.id for c in keep}
        return replace(self, classes=keep, same_as={a: c for a, c in self.same_as.items() if c in ids})

    def hold_out(self, percent: float) -> tuple[Snapshot, Snapshot]:
        """(this snapshot without ``percent`` % of its classes, a snapshot of just those classes).

        Which classes is a hash of the entity id (as :func:`split_of` does for pairs), so the same
        entities are held out of every snapshot. Both class tables are renumbered from 0 in count
        order. Training on the first and measuring retrieval among the second's images tells how the
        model does on entities it never saw, which is what GPR1200-style benchmarks measure.
        """
        if not 0 < percent < 100:
            raise ValueError(f"held-out class percent must be in (0, 100), got {percent}")
        parts: dict[str, list[EntityClass]] = {"train": [], "val": []}
        for c in self.classes:
            parts[split_of(c.id, percent)].append(c)

        def only(classes: list[EntityClass]) -> Snapshot:
            ids = {c.id for c in classes}
            return replace(
                self,
                classes=[replace(c, index=i) for i, c in enumerate(classes)],
                same_as={a: c for a, c in self.same_as.items() if c in ids},
            )

        return only(parts["train"]), only(parts["val"])

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Snapshot:
        d = dict(d)
        d["classes"] = [EntityClass(**c) for c in d["classes"]]
        return cls(**d)

    def save(self, store: ObjectStore, uri: str) -> None:
        store.put_bytes(
            uri, json.dumps(self.to_dict(), indent=1, ensure_ascii=False).encode(), content_type="application/json"
        )

    @classmethod
    def load(cls, store: ObjectStore, uri: str) -> Snapshot:
        return cls.from_dict(json.loads(store.get_bytes(uri)))


def new_version(now: datetime | None = None) -> str:
    """A sortable version name, e.g. ``20261129T002500Z``."""
    return (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")


def create_snapshot(
    store: ObjectStore,
    i2e_prefix_uri: str,
    snapshot_uri: str,
    min_count: int,
    val_percent: float,
    kb: KnowledgeBase | None = None,
) -> Snapshot:
    """Freeze every complete shard under ``i2e_prefix_uri`` into a snapshot and save it.

    Classes are the entities with at least ``min_count`` images, ordered by count (then id) so the
    most frequent entity is class 0. A pair id found in more than one shard is counted once.
    The version is the folder of ``snapshot_uri`` (``.../snapshots/<version>/manifest.json``).
    With ``kb``, entity ids count as their canonical id (named and described as the KB's canonical
    entity); a pair that carries two ids of one concept counts twice, which only records written
    before the links can.
    """
    if min_count < 1:
        raise ValueError("min_count must be >= 1")
    if not 0 <= val_percent < 100:
        raise ValueError("val_percent must be in [0, 100)")
    shards = list_shards(store, i2e_prefix_uri)
    seen: set[str] = set()
    counts: dict[str, dict[str, Any]] = {}
    sha: dict[str, str] = {}
    same_as: dict[str, str] = {}
    for uri in shards:
        m = read_manifest(store, uri)
        sha[uri] = m["sha256"]
        fresh = [p for p in m["pair_ids"] if p not in seen]
        seen.update(fresh)
        if len(fresh) != len(m["pair_ids"]):  # rare: re-read the shard to count only its new pairs
            fresh_set = set(fresh)
            rows = entity_summary(s for s in iter_shard(store, uri) if s.pair_id in fresh_set)
        else:
            rows = m["entities"]
        for eid, row in rows.items():
            canonical = kb.canonical(eid) if kb is not None else eid
            entity = kb.get(canonical) if kb is not None and canonical != eid else None
            if entity is not None:
                same_as[eid] = canonical
                row = {**row, "name": entity.name, "description": entity.description}
            agg = counts.setdefault(canonical, {"name": row["name"], "description": row["description"], "count": 0})
            agg["count"] += row["count"]
    kept = sorted(
        ((r["count"], eid) for eid, r in counts.items() if r["count"] >= min_count), key=lambda t: (-t[0], t[1])
    )
    classes = [
        EntityClass(i, eid, counts[eid]["name"], counts[eid]["description"], n) for i, (n, eid) in enumerate(kept)
    ]
    snap = Snapshot(
        version=snapshot_version(snapshot_uri),
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        shards=shards,
        classes=classes,
        val_percent=float(val_percent),
        num_samples=len(seen),
        min_count=min_count,
        shard_sha256=sha,
        same_as=same_as,
    )
    snap.save(store, snapshot_uri)
    return snap
