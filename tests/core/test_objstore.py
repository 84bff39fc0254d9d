"""The MinIO SDK against the real S3 server, and local paths, through one ObjectStore interface."""

import io
import os

import pytest

from mofi.objstore import ObjectTooLarge, parse_uri


@pytest.mark.parametrize("where", ["s3", "local"])
def test_put_get_list_exists_delete(store, unique, tmp_path, where):
    base = f"s3://objtest-{unique}/a" if where == "s3" else str(tmp_path / "a")
    store.put_bytes(f"{base}/x/1.bin", b"one")
    store.put_bytes(f"{base}/x/2.bin", b"two")
    store.put_bytes(f"{base}/y.bin", b"three")
    assert store.get_bytes(f"{base}/x/2.bin") == b"two"
    assert [u.rsplit("/", 2)[-2:] for u in store.list(f"{base}/x")] == [["x", "1.bin"], ["x", "2.bin"]]
    assert store.exists(f"{base}/y.bin") and not store.exists(f"{base}/nope.bin")
    store.delete(f"{base}/y.bin")
    assert not store.exists(f"{base}/y.bin")


def test_multipart_upload_of_unknown_length(store, unique):
    data = os.urandom(20 * 1024 * 1024 + 123)  # more than one 16 MiB part
    uri = f"s3://objtest-{unique}/big.bin"
    store.put_stream(uri, io.BytesIO(data), length=-1)
    assert store.get_bytes(uri) == data
    stat = store.client.stat_object(*parse_uri(uri))
    assert stat.size == len(data)
    assert "-" in stat.etag.strip('"'), "a multipart upload has a composite ETag"


def test_parse_uri():
    assert parse_uri("s3://b/k/x") == ("b", "k/x")
    assert parse_uri("/tmp/x") == (None, "/tmp/x")
    with pytest.raises(ValueError):
        parse_uri("s3:///k")


@pytest.mark.parametrize("where", ["s3", "local"])
def test_a_sized_read_refuses_a_larger_object_before_reading_it(store, unique, tmp_path, where):
    uri = f"s3://objtest-{unique}/big.png" if where == "s3" else str(tmp_path / "big.png")
    store.put_bytes(uri, b"\x89PNG" + os.urandom(3 * 1024 * 1024))
    assert len(store.get_bytes(uri, max_bytes=4 * 1024 * 1024)) == 3 * 1024 * 1024 + 4
    # the refusal names the object's real size: it came from the HEAD (or fstat), not from reading the body
    with pytest.raises(ObjectTooLarge, match=rf"is {3 * 1024 * 1024 + 4} bytes, over the limit of 1048576"):
        store.get_bytes(uri, max_bytes=1024 * 1024)


def test_a_sized_read_stops_at_the_limit_when_the_stream_runs_longer():
    from mofi.objstore import _read_within

    with pytest.raises(ObjectTooLarge, match="is 11 bytes, over the limit of 10"):
        _read_within("s3://b/k", io.BytesIO(b"x" * 1000), 10)
    assert _read_within("s3://b/k", io.BytesIO(b"x" * 10), 10) == b"x" * 10
