"""`mofi i2e shards|snapshot` against the real S3 server."""

from __future__ import annotations

from click.testing import CliRunner

from mofi.cli import main
from mofi.i2e import Snapshot, snapshot_uri, write_shard
from tests.writer.test_i2e_format import _sample


def _run(settings, *args):
    return CliRunner().invoke(main, list(args), env=settings.to_env(), catch_exceptions=False)


def test_snapshot_command_freezes_shards_once_per_version(settings, store):
    empty = _run(settings, "i2e", "snapshot", "--min-count", "1", "--version", "v0")
    assert empty.exit_code != 0 and "no complete shards" in empty.output
    prefix = f"s3://{settings.s3.i2e_bucket}/{settings.writer.prefix}"
    write_shard(store, f"{prefix}/t/p0000-000000000000.tar", [_sample("p1", "wn:1"), _sample("p2", "wn:1", "wn:2")])
    write_shard(store, f"{prefix}/t/p0001-000000000000.tar", [_sample("p3", "wn:2")])

    listed = _run(settings, "i2e", "shards")
    assert listed.exit_code == 0 and listed.output.count(".tar") == 2

    res = _run(settings, "i2e", "snapshot", "--min-count", "2", "--val-percent", "50", "--version", "v1")
    assert res.exit_code == 0, res.output
    assert "2 shards, 3 samples, 2 classes" in res.output
    snap = Snapshot.load(store, snapshot_uri(settings.s3.i2e_bucket, "v1"))
    assert snap.version == "v1" and snap.val_percent == 50 and snap.min_count == 2
    assert [(c.id, c.count) for c in snap.classes] == [("wn:1", 2), ("wn:2", 2)]

    again = _run(settings, "i2e", "snapshot", "--version", "v1")
    assert again.exit_code != 0 and "immutable" in again.output
