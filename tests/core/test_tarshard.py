"""The one WebDataset tar codec of corpus and I2E shards: order kept, bytes deterministic, any tar tool reads it."""

from __future__ import annotations

import io
import tarfile

from mofi.tarshard import pack, unpack

SAMPLES = [("a", [("png", b"\x89PNG a"), ("json", b'{"k": 1}')]), ("b", [("jpg", b"jpeg b"), ("json", b"{}")])]


def test_members_keep_the_given_order_and_plain_tar_metadata():
    data = pack(SAMPLES)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = tar.getmembers()
    assert [m.name for m in members] == ["a.png", "a.json", "b.jpg", "b.json"]
    assert {(m.mode, m.mtime, m.uname) for m in members} == {(0o644, 0, "")}
    assert pack(SAMPLES) == data  # same samples, same bytes


def test_unpack_groups_consecutive_members_by_key():
    assert list(unpack(pack(SAMPLES))) == [(k, dict(parts)) for k, parts in SAMPLES]
    assert list(unpack(pack([("x.y", [("json", b"1")])]))) == [("x.y", {"json": b"1"})]  # key ends at the last dot
    assert list(unpack(pack([]))) == []
