"""Milvus collections behind an alias: build a new version completely, then switch the alias.

Why versions + alias: a reindex writes ``<alias>_v<timestamp>`` while searches keep using the
alias; only after the new collection holds every row and is loaded does the alias move, so a
search sees either the old complete index or the new complete one, never a half-built one. Each
search resolves the alias once and queries that concrete collection, and the previous version is
kept (dropping it could fail a search that resolved just before the switch).

Why a collection records its model: vectors of two models are not comparable, so a collection carries the
version and checkpoint of the model that built it (collection properties, :meth:`VectorStore.built_by`), and
Search embeds each query with that model (``models.ModelHolder.model_for``). Switching the alias therefore
switches the query model with it, in the same step, whatever model a given embedder pod serves by default.

``uri`` is a milvus-lite file (in-process) or a Milvus server URI; the calls are the same.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pymilvus import DataType, MilvusClient, MilvusException

__all__ = [
    "VectorStore",
    "IndexRow",
    "Hit",
    "UnknownCollection",
    "BadQuery",
    "TEXT_MAX",
    "MAX_ENTITIES",
    "MODEL_VERSION_PROPERTY",
    "CHECKPOINT_PROPERTY",
]

log = logging.getLogger(__name__)

TEXT_MAX = 1000  # characters of alt-text kept per row (Milvus VARCHAR limits are in bytes)
MAX_ENTITIES = 64  # entity ids/names kept per row
THUMB_MAX = 65535  # bytes of the base64 thumbnail (Milvus VARCHAR maximum)
OUTPUT_FIELDS = ["entity_ids", "entity_names", "source", "text", "model_version"]
_VERSION_SUFFIX = re.compile(r"_v(\d+)$")
#: Collection properties naming the model that built the collection.
MODEL_VERSION_PROPERTY, CHECKPOINT_PROPERTY = "mofi.model_version", "mofi.checkpoint"


class UnknownCollection(LookupError):
    """Neither a collection nor an alias of that name exists."""


class BadQuery(ValueError):
    """The query cannot run against this collection; the message says why."""


@dataclass
class IndexRow:
    """One image in the index."""

    pair_id: str
    vector: np.ndarray
    entity_ids: list[str] = field(default_factory=list)
    entity_names: list[str] = field(default_factory=list)
    source: str = ""
    text: str = ""
    model_version: str = ""
    thumbnail: str = ""  # base64 JPEG, for contact sheets; empty when not stored

    def to_dict(self) -> dict[str, Any]:
        return {
            "pair_id": self.pair_id,
            "vector": np.asarray(self.vector, dtype=np.float32).tolist(),
            "entity_ids": list(self.entity_ids[:MAX_ENTITIES]),
            "entity_names": [n[:256] for n in self.entity_names[:MAX_ENTITIES]],
            "source": self.source[:128],
            "text": self.text[:TEXT_MAX],
            "model_version": self.model_version[:256],
            "thumbnail": self.thumbnail if len(self.thumbnail) <= THUMB_MAX else "",
        }


@dataclass(frozen=True)
class Hit:
    pair_id: str
    score: float
    entity_ids: list[str]
    entity_names: list[str]
    source: str
    text: str
    model_version: str
    thumbnail: str = ""


def _quoted(value: str, what: str) -> str:
    """A Milvus string literal; quotes and backslashes are refused rather than escaped (no filter injection)."""
    if '"' in value or "\\" in value:
        raise BadQuery(f"{what} filter may not contain quotes or backslashes")
    return f'"{value}"'


def filter_expr(entity_id: str = "", source: str = "") -> str:
    parts = []
    if entity_id:
        parts.append(f"array_contains(entity_ids, {_quoted(entity_id, 'entity id')})")
    if source:
        parts.append(f"source == {_quoted(source, 'source')}")
    return " and ".join(parts)


class VectorStore:
    """Versioned image collections behind ``alias`` in one Milvus (or milvus-lite) database."""

    def __init__(
        self,
        uri: str,
        alias: str,
        token: str = "",
        index_type: str = "FLAT",
        index_params: dict | None = None,
        search_params: dict | None = None,
    ):
        self.client = MilvusClient(uri, token=token) if token else MilvusClient(uri)
        self.alias = alias
        self.index_type = index_type
        self.index_params = index_params or {}
        self.search_params = search_params or {}
        self._dims: dict[str, int] = {}
        self._built_by: dict[str, tuple[str, str]] = {}
        # metadata calls (create, alias, list, describe) never interleave: milvus-lite failed a new
        # collection's index creation while another thread resolved the alias during a reindex
        self._lock = threading.RLock()

    # -- building -------------------------------------------------------------------------------
    def _schema(self, dim: int):
        s = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        s.add_field("pair_id", DataType.VARCHAR, is_primary=True, max_length=64)
        s.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
        s.add_field(
            "entity_ids", DataType.ARRAY, element_type=DataType.VARCHAR, max_capacity=MAX_ENTITIES, max_length=128
        )
        s.add_field(
            "entity_names", DataType.ARRAY, element_type=DataType.VARCHAR, max_capacity=MAX_ENTITIES, max_length=1024
        )
        s.add_field("source", DataType.VARCHAR, max_length=512)
        s.add_field("text", DataType.VARCHAR, max_length=4 * TEXT_MAX)
        s.add_field("model_version", DataType.VARCHAR, max_length=1024)
        s.add_field("thumbnail", DataType.VARCHAR, max_length=THUMB_MAX)
        return s

    def new_collection(self, dim: int, model_version: str = "", checkpoint: str = "") -> str:
        """Create an empty ``<alias>_v<timestamp>`` collection (not yet visible through the alias) that records
        the model building it: its version and the checkpoint it loads from."""
        with self._lock:
            name = f"{self.alias}_v{time.time_ns() // 1000}"
            params = self.client.prepare_index_params()
            params.add_index("vector", index_type=self.index_type, metric_type="COSINE", params=self.index_params)
            properties = {MODEL_VERSION_PROPERTY: model_version, CHECKPOINT_PROPERTY: checkpoint}
            self.client.create_collection(name, schema=self._schema(dim), index_params=params, properties=properties)
            self._dims[name] = dim
        return name

    def built_by(self, collection: str) -> tuple[str, str]:
        """(model version, checkpoint) recorded by ``collection``; ("", "") for one that recorded none."""
        if collection not in self._built_by:
            with self._lock:
                props = self.client.describe_collection(collection).get("properties") or {}
            self._built_by[collection] = (props.get(MODEL_VERSION_PROPERTY, ""), props.get(CHECKPOINT_PROPERTY, ""))
        return self._built_by[collection]

    def insert(self, collection: str, rows: Sequence[IndexRow]) -> None:
        if rows:
            self.client.insert(collection, [r.to_dict() for r in rows])

    def upsert(self, collection: str, rows: Sequence[IndexRow]) -> None:
        if rows:
            self.client.upsert(collection, [r.to_dict() for r in rows])

    def seal(self, collection: str) -> None:
        """Flush growing segments so searches use the index (see :meth:`publish`)."""
        self.client.flush(collection)

    def publish(self, collection: str, keep_previous: int = 1) -> None:
        """Seal and load ``collection``, point the alias at it, then drop versions older than ``keep_previous``.

        Why flush: rows still in a growing segment are searched without the index (in milvus-lite
        ten times slower even at 5k rows); sealing builds the index before the first search.
        """
        self.seal(collection)
        self.client.load_collection(collection)
        with self._lock:
            if self.current() is None:
                self.client.create_alias(collection, self.alias)
            else:
                self.client.alter_alias(collection, self.alias)
        log.info("alias %s -> %s", self.alias, collection)
        with self._lock:
            older = [v for v in self.versions() if v != collection]
            for name in older[: max(0, len(older) - keep_previous)]:
                self.client.drop_collection(name)
                self._dims.pop(name, None)
                self._built_by.pop(name, None)
                log.info("dropped old collection %s", name)

    def versions(self) -> list[str]:
        """This alias's versioned collections, oldest first."""
        names = [
            n for n in self.client.list_collections() if n.startswith(f"{self.alias}_v") and _VERSION_SUFFIX.search(n)
        ]
        return sorted(names, key=lambda n: int(_VERSION_SUFFIX.search(n).group(1)))

    def current(self) -> str | None:
        """The collection the alias points at, or None before the first publish."""
        try:
            return self.resolve(self.alias)
        except UnknownCollection:
            return None

    def ensure_current(self, dim: int, model_version: str = "", checkpoint: str = "") -> str:
        """The alias's collection, creating and publishing an empty one (built by that model) if there is none."""
        name = self.current()
        if name is None:
            name = self.new_collection(dim, model_version, checkpoint)
            self.publish(name)
        return name

    # -- searching ------------------------------------------------------------------------------
    def resolve(self, name: str) -> str:
        """Alias or collection name -> the concrete collection."""
        if not name:
            raise UnknownCollection("empty collection name")
        with self._lock:
            if name in self.client.list_collections():
                return name
            if name in self.client.list_aliases().get("aliases", []):
                try:
                    return self.client.describe_alias(name)["collection_name"]
                except Exception:  # dropped between the two calls
                    pass
        raise UnknownCollection(f"no collection or alias named {name!r}")

    def dim(self, collection: str) -> int:
        if collection not in self._dims:
            with self._lock:
                fields = self.client.describe_collection(collection)["fields"]
            self._dims[collection] = next(int(f["params"]["dim"]) for f in fields if f["name"] == "vector")
        return self._dims[collection]

    def count(self, collection: str) -> int:
        return int(self.client.query(collection, filter="", output_fields=["count(*)"])[0]["count(*)"])

    def search(
        self,
        vector: np.ndarray,
        k: int,
        collection: str = "",
        entity_id: str = "",
        source: str = "",
        with_thumbnails: bool = False,
    ) -> tuple[str, list[Hit]]:
        """(concrete collection, hits best first); raises UnknownCollection or BadQuery.

        Pass the concrete name :meth:`resolve` gave when the query vector was made for that collection: the
        alias may move meanwhile.
        """
        concrete = self.resolve(collection or self.alias)
        vector = np.asarray(vector, dtype=np.float32).reshape(-1)
        if vector.shape[0] != self.dim(concrete):
            raise BadQuery(
                f"query vector has {vector.shape[0]} dimensions; collection {concrete} has {self.dim(concrete)}"
            )
        fields = OUTPUT_FIELDS + (["thumbnail"] if with_thumbnails else [])

        def run() -> list:
            return self.client.search(
                concrete,
                data=[vector.tolist()],
                limit=k,
                filter=filter_expr(entity_id, source),
                output_fields=fields,
                search_params={"params": self.search_params},
            )[0]

        try:
            results = run()
        except MilvusException as e:
            # A collection published by another process (the pipeline's index step) is not loaded
            # in this one: milvus-lite reports it "released". Load it once and search again.
            if "released" not in str(e):
                raise
            log.info("loading collection %s (published by another process)", concrete)
            self.client.load_collection(concrete)
            results = run()
        hits = [
            Hit(
                pair_id=r["pair_id"],
                score=float(r["distance"]),
                entity_ids=list(r["entity"].get("entity_ids") or []),
                entity_names=list(r["entity"].get("entity_names") or []),
                source=r["entity"].get("source", ""),
                text=r["entity"].get("text", ""),
                model_version=r["entity"].get("model_version", ""),
                thumbnail=r["entity"].get("thumbnail", ""),
            )
            for r in results
        ]
        return concrete, hits

    def close(self) -> None:
        self.client.close()
