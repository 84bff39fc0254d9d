"""Where every I2E object lives in the I2E bucket: the one home of the keys.

::

    s3://<s3.i2e_bucket>/
      <writer.prefix>/<topic>/p<PPPP>-<first offset, 12 digits>.tar   a shard of one Kafka partition
      <writer.prefix>/<topic>/p<PPPP>-<...>.tar.manifest.json         its manifest, written after it
      snapshots/<version>/manifest.json                               a frozen training dataset
      no-entity/<pair_id>.json                                        a pair whose image shows none of its candidates

Why one module: the writer writes these keys, the scorer the no-entity ones, snapshots, the indexer,
training and the report read them; a key spelled in two places is a key that can drift.
"""

from __future__ import annotations

from typing import Any

from mofi.objstore import join_uri, parse_uri

__all__ = [
    "MANIFEST_SUFFIX",
    "NO_ENTITY_PREFIX",
    "SNAPSHOTS_PREFIX",
    "shards_prefix",
    "partition_prefix",
    "shard_uri",
    "manifest_uri",
    "snapshot_uri",
    "snapshot_version",
    "no_entity_prefix",
    "no_entity_uri",
]

MANIFEST_SUFFIX = ".manifest.json"
SNAPSHOTS_PREFIX = "snapshots"
NO_ENTITY_PREFIX = "no-entity"


def shards_prefix(settings: Any) -> str:
    """Where the writer puts I2E shards: ``s3://<s3.i2e_bucket>/<writer.prefix>/``."""
    return join_uri(f"s3://{settings.s3.i2e_bucket}", settings.writer.prefix) + "/"


def partition_prefix(prefix_uri: str, topic: str, partition: int) -> str:
    """Key prefix shared by every shard of one Kafka partition (and by nothing else)."""
    return join_uri(prefix_uri, topic, f"p{partition:04d}-")


def shard_uri(prefix_uri: str, topic: str, partition: int, first_offset: int) -> str:
    """The shard of ``partition`` that starts at ``first_offset`` (names sort in offset order)."""
    return f"{partition_prefix(prefix_uri, topic, partition)}{first_offset:012d}.tar"


def manifest_uri(shard_uri: str) -> str:
    return shard_uri + MANIFEST_SUFFIX


def snapshot_uri(i2e_bucket: str, version: str) -> str:
    return f"s3://{i2e_bucket}/{SNAPSHOTS_PREFIX}/{version}/manifest.json"


def snapshot_version(uri: str) -> str:
    """The version a snapshot URI names: its folder (``.../<version>/manifest.json``) or file stem."""
    _, key = parse_uri(uri)
    parts = key.rstrip("/").split("/")
    return parts[-2] if len(parts) >= 2 and parts[-1] == "manifest.json" else parts[-1].rsplit(".", 1)[0]


def no_entity_prefix(i2e_bucket: str) -> str:
    return f"s3://{i2e_bucket}/{NO_ENTITY_PREFIX}/"


def no_entity_uri(i2e_bucket: str, pair_id: str) -> str:
    return f"{no_entity_prefix(i2e_bucket)}{pair_id}.json"
