"""The I2E dataset: WebDataset shards of images with their kept entities, and snapshots of them.

A shard is a tar under :func:`~mofi.i2e.layout.shards_prefix` whose members come in pairs,
``{pair_id}.{png|jpg|webp}`` then ``{pair_id}.json``: pair id, alt-text, source, licence, original
path, scorer model, ``kb_version`` (the :attr:`~mofi.kb.KnowledgeBase.version` of the knowledge base
that labelled the pair), ``entities`` (the kept ones, best first: ``[{id, name, description, score,
link_score, method}]``; these are the labels) and ``dropped`` (the candidates the scorer dropped for
this image, best first: ``[{id, name, score}]``). Shards written before ``dropped`` or ``kb_version``
existed lack the key. Beside it, ``<shard>.manifest.json`` is written *after* the tar ({shard, count,
pair_ids, sha256, entities summary of the kept entities, plus writer fields}).

The parts: :mod:`~mofi.i2e.layout` (every key in the I2E bucket), :mod:`~mofi.i2e.shards` (a shard
and its manifest), :mod:`~mofi.i2e.snapshot` (class table and split) and :mod:`~mofi.i2e.records`
(Kafka I2E records -> samples). This package exports the first three's public names.
"""

from __future__ import annotations

from mofi.i2e.layout import MANIFEST_SUFFIX, manifest_uri, shards_prefix, snapshot_uri
from mofi.i2e.shards import (
    IMAGE_EXTS,
    I2EFormatError,
    I2ESample,
    iter_shard,
    list_shards,
    read_manifest,
    write_shard,
)
from mofi.i2e.snapshot import EntityClass, Snapshot, create_snapshot, new_version, split_of

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
