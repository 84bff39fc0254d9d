"""The I2E shard and snapshot format against the real S3 server."""

from __future__ import annotations

import io
import json
import tarfile

import pytest
from PIL import Image

from mofi.i2e import (
    I2EFormatError,
    I2ESample,
    Snapshot,
    create_snapshot,
    iter_shard,
    list_shards,
    manifest_uri,
    read_manifest,
    snapshot_uri,
    split_of,
    write_shard,
)


def _png(color: tuple[int, int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), color).save(buf, format="PNG")
    return buf.getvalue()


def _sample(pid: str, *entities: str) -> I2ESample:
    ents = [{"id": e, "name": e.split(":")[1], "description": f"about {e}", "score": 0.3} for e in entities]
    return I2ESample(
        pid,
        _png((len(pid) * 20 % 255, 10, 10)),
        "png",
        {"text": f"alt {pid}", "source": "test", "licence": "CC0", "entities": ents, "scorer_model": "m"},
    )


def test_roundtrip_members_and_manifest(settings, store):
    uri = f"s3://{settings.s3.i2e_bucket}/shards/a.tar"
    samples = [_sample("p1", "wn:1", "wn:2"), _sample("p2", "wn:1")]
    manifest = write_shard(store, uri, samples, extra={"partition": 3})
    back = list(iter_shard(store, uri, verify=True))
    assert [s.pair_id for s in back] == ["p1", "p2"]
    assert back[0].image_bytes == samples[0].image_bytes and back[0].ext == "png"
    assert back[0].meta["entities"][1]["id"] == "wn:2" and back[0].meta["pair_id"] == "p1"
    stored = read_manifest(store, uri)
    assert stored == manifest
    assert stored["count"] == 2 and stored["pair_ids"] == ["p1", "p2"] and stored["partition"] == 3
    assert stored["entities"]["wn:1"]["count"] == 2
    # WebDataset layout: image then json per key
    with tarfile.open(fileobj=io.BytesIO(store.get_bytes(uri))) as tar:
        assert tar.getnames() == ["p1.png", "p1.json", "p2.png", "p2.json"]


def test_shard_without_manifest_is_invisible(settings, store):
    prefix = f"s3://{settings.s3.i2e_bucket}/shards"
    write_shard(store, f"{prefix}/done.tar", [_sample("p1", "wn:1")])
    write_shard(store, f"{prefix}/half.tar", [_sample("p2", "wn:1")])
    store.delete(manifest_uri(f"{prefix}/half.tar"))  # as if killed between the two PUTs
    assert list_shards(store, prefix) == [f"{prefix}/done.tar"]


def test_verify_detects_a_changed_tar(settings, store):
    uri = f"s3://{settings.s3.i2e_bucket}/shards/x.tar"
    write_shard(store, uri, [_sample("p1", "wn:1")])
    store.put_bytes(uri, store.get_bytes(uri).replace(b"alt p1", b"alt p9"))
    with pytest.raises(I2EFormatError, match="sha256"):
        list(iter_shard(store, uri, verify=True))


@pytest.mark.parametrize(
    "bad, why",
    [
        (I2ESample("../p", b"x", "png", {}), "safe tar member"),
        (I2ESample("p", b"x", "gif", {}), "extension"),
        (I2ESample("p", b"", "png", {}), "empty image"),
        (I2ESample("p", b"x", "png", {"entities": [{"id": "a"}]}), "lacks"),
    ],
)
def test_bad_samples_are_rejected_with_reason(tmp_path, store, bad, why):
    with pytest.raises(I2EFormatError, match=why):
        write_shard(store, str(tmp_path / "s.tar"), [bad])


def test_duplicate_pair_in_one_shard_rejected(tmp_path, store):
    with pytest.raises(I2EFormatError, match="twice"):
        write_shard(store, str(tmp_path / "s.tar"), [_sample("p1", "wn:1"), _sample("p1", "wn:2")])


def test_split_is_deterministic_and_near_requested_fraction():
    ids = [f"{i:016x}" for i in range(4000)]
    val = [p for p in ids if split_of(p, 10) == "val"]
    assert 0.08 < len(val) / len(ids) < 0.12
    assert val == [p for p in ids if split_of(p, 10) == "val"]
    assert all(split_of(p, 0) == "train" for p in ids[:100])


def test_snapshot_class_table_counts_and_split(settings, store):
    bucket = settings.s3.i2e_bucket
    prefix = f"s3://{bucket}/shards"
    write_shard(store, f"{prefix}/a.tar", [_sample("p1", "wn:1", "wn:2"), _sample("p2", "wn:1")])
    write_shard(store, f"{prefix}/b.tar", [_sample("p3", "wn:1", "wn:3"), _sample("p4", "wn:2")])
    # a duplicate of p2 in a later shard is counted once
    write_shard(store, f"{prefix}/c.tar", [_sample("p2", "wn:1"), _sample("p5", "wn:3")])
    uri = snapshot_uri(bucket, "v1")
    snap = create_snapshot(store, prefix, uri, min_count=2, val_percent=20)
    assert snap.version == "v1"
    assert snap.num_samples == 5
    assert [(c.index, c.id, c.count) for c in snap.classes] == [(0, "wn:1", 3), (1, "wn:2", 2), (2, "wn:3", 2)]
    assert snap.classes[0].description == "about wn:1"
    assert snap.shards == [f"{prefix}/a.tar", f"{prefix}/b.tar", f"{prefix}/c.tar"]
    loaded = Snapshot.load(store, uri)
    assert loaded == snap
    assert loaded.class_index() == {"wn:1": 0, "wn:2": 1, "wn:3": 2}
    assert {loaded.split_of(p) for p in ("p1", "p2", "p3", "p4", "p5")} <= {"train", "val"}
    assert json.loads(store.get_bytes(uri))["min_count"] == 2
    higher = create_snapshot(store, prefix, snapshot_uri(bucket, "v2"), min_count=3, val_percent=20)
    assert [c.id for c in higher.classes] == ["wn:1"]
