"""`mofi objstore get` against the real S3 server: copies an object, and fails naming what is missing."""

import uuid

import pytest
from click.testing import CliRunner

from mofi.objstore_cli import objstore


def get(settings, uri, path):
    return CliRunner().invoke(objstore, ["get", uri, str(path)], obj=settings)


def test_copies_an_object_to_a_local_file(local_stack, store, tmp_path):
    uri = f"s3://objcli-{uuid.uuid4().hex[:8]}/kb/kb.jsonl"
    store.put_bytes(uri, b'{"id": "wn:1"}\n')
    done = get(local_stack, uri, tmp_path / "kb.jsonl")
    assert done.exit_code == 0, done.output
    assert (tmp_path / "kb.jsonl").read_bytes() == b'{"id": "wn:1"}\n'
    assert f"{uri} -> {tmp_path / 'kb.jsonl'}" in done.output


@pytest.mark.parametrize("missing", ["key", "bucket"])
def test_a_missing_object_fails_with_its_uri(local_stack, store, tmp_path, missing):
    bucket = f"objcli-{uuid.uuid4().hex[:8]}"
    if missing == "key":
        store.ensure_bucket(bucket)
    uri = f"s3://{bucket}/kb/absent.jsonl"
    done = get(local_stack, uri, tmp_path / "kb.jsonl")
    assert done.exit_code == 1
    assert f"Error: no object at {uri} (NoSuch" in done.output  # the server's code: NoSuchKey or NoSuchBucket
    assert not (tmp_path / "kb.jsonl").exists()


def test_local_paths(local_stack, tmp_path):
    (tmp_path / "src.bin").write_bytes(b"local")
    done = get(local_stack, str(tmp_path / "src.bin"), tmp_path / "dst.bin")
    assert done.exit_code == 0, done.output
    assert (tmp_path / "dst.bin").read_bytes() == b"local"
    done = get(local_stack, str(tmp_path / "absent.bin"), tmp_path / "dst2.bin")
    assert done.exit_code == 1
    assert f"Error: no file at {tmp_path / 'absent.bin'}" in done.output
    assert not (tmp_path / "dst2.bin").exists()
