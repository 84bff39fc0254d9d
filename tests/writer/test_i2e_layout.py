"""Every key in the I2E bucket comes from mofi.i2e.layout; these are the keys existing data has."""

from __future__ import annotations

from types import SimpleNamespace

from mofi.i2e.layout import (
    manifest_uri,
    no_entity_prefix,
    no_entity_uri,
    partition_prefix,
    shard_uri,
    shards_prefix,
    snapshot_uri,
    snapshot_version,
)


def test_shard_keys():
    settings = SimpleNamespace(s3=SimpleNamespace(i2e_bucket="mofi-i2e"), writer=SimpleNamespace(prefix="/shards/"))
    prefix = shards_prefix(settings)
    assert prefix == "s3://mofi-i2e/shards/"
    assert partition_prefix(prefix, "mofi.i2e.v1", 3) == "s3://mofi-i2e/shards/mofi.i2e.v1/p0003-"
    uri = shard_uri(prefix.rstrip("/"), "mofi.i2e.v1", 3, 42)
    assert uri == "s3://mofi-i2e/shards/mofi.i2e.v1/p0003-000000000042.tar"
    assert manifest_uri(uri) == uri + ".manifest.json"


def test_snapshot_and_no_entity_keys():
    uri = snapshot_uri("mofi-i2e", "20261129T002500Z")
    assert uri == "s3://mofi-i2e/snapshots/20261129T002500Z/manifest.json"
    assert snapshot_version(uri) == "20261129T002500Z"
    assert snapshot_version("s3://b/somewhere/v7.json") == "v7"
    assert no_entity_prefix("mofi-i2e") == "s3://mofi-i2e/no-entity/"
    assert no_entity_uri("mofi-i2e", "abc") == "s3://mofi-i2e/no-entity/abc.json"
