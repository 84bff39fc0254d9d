"""Object storage by URI: ``s3://bucket/key`` through the MinIO SDK, or a local path.

Why one small interface: corpus shards, I2E shards, snapshots and checkpoints are written by
services, training and pipelines alike, locally (a directory) or in a cluster (MinIO). Callers name
a location by URI and never branch on where it lives. Writes are whole-object: an object is visible
only once complete (S3 PUT semantics; locally, write-to-temp then rename).
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

import urllib3
from minio import Minio
from minio.error import S3Error, ServerError

from mofi.settings import S3Settings

__all__ = ["ObjectStore", "ObjectTooLarge", "parse_uri", "minio_client", "join_uri", "is_missing", "is_transient"]

# S3 error codes for "there is no such object" (the key, or its whole bucket); S3 servers differ in which they send.
_MISSING = frozenset({"NoSuchKey", "NoSuchBucket", "NoSuchObject", "ResourceNotFound"})


def parse_uri(uri: str) -> tuple[str | None, str]:
    """``s3://bucket/key`` -> (bucket, key); anything else -> (None, local path)."""
    if uri.startswith("s3://"):
        bucket, _, key = uri[5:].partition("/")
        if not bucket:
            raise ValueError(f"no bucket in {uri!r}")
        return bucket, key
    return None, uri


def join_uri(base: str, *parts: str) -> str:
    out = base.rstrip("/")
    for p in parts:
        out = f"{out}/{p.strip('/')}"
    return out


def is_missing(error: S3Error) -> bool:
    """Whether an S3 error means the object (or its bucket) does not exist."""
    return error.code in _MISSING


def is_transient(error: BaseException) -> bool:
    """Whether an S3 call may succeed when retried: the server unreachable, timing out or answering 5xx."""
    if isinstance(error, S3Error):
        return error.response is not None and error.response.status >= 500
    return isinstance(error, (ServerError, urllib3.exceptions.HTTPError, ConnectionError, TimeoutError))


def minio_client(cfg: S3Settings) -> Minio:
    return Minio(
        cfg.endpoint, access_key=cfg.access_key, secret_key=cfg.secret_key, secure=cfg.secure, region=cfg.region
    )


class ObjectTooLarge(ValueError):
    """An object read with a size limit is larger than the limit."""


def _check_size(uri: str, size: int, max_bytes: int) -> None:
    if size > max_bytes:
        raise ObjectTooLarge(f"{uri} is {size} bytes, over the limit of {max_bytes}")


class _Readable(Protocol):
    def read(self, amt: int = ..., /) -> bytes: ...


def _read_within(uri: str, stream: _Readable, max_bytes: int) -> bytes:
    """All of ``stream``, or :class:`ObjectTooLarge` as soon as it passes ``max_bytes`` (> 0)."""
    if not max_bytes:
        return stream.read()
    data = stream.read(max_bytes + 1)
    _check_size(uri, len(data), max_bytes)
    return data


@dataclass
class ObjectStore:
    """Reads and writes objects named by URI. ``client`` is created lazily from ``cfg`` for s3:// URIs."""

    cfg: S3Settings

    def __post_init__(self) -> None:
        self._client: Minio | None = None
        self._buckets: set[str] = set()

    @property
    def client(self) -> Minio:
        if self._client is None:
            self._client = minio_client(self.cfg)
        return self._client

    def ensure_bucket(self, bucket: str) -> None:
        if bucket in self._buckets:
            return
        if not self.client.bucket_exists(bucket):
            try:
                self.client.make_bucket(bucket)
            except S3Error as e:  # another process won the race
                if e.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                    raise
        self._buckets.add(bucket)

    def put_bytes(self, uri: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        self.put_stream(uri, io.BytesIO(data), len(data), content_type)

    def put_stream(
        self, uri: str, stream: BinaryIO, length: int = -1, content_type: str = "application/octet-stream"
    ) -> None:
        """Write an object; ``length=-1`` streams with multipart upload (large files)."""
        bucket, key = parse_uri(uri)
        if bucket is None:
            path = Path(key)
            path.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=path.parent, delete=False, prefix=".tmp-") as tmp:
                while chunk := stream.read(1 << 20):
                    tmp.write(chunk)
            os.replace(tmp.name, path)
            return
        self.ensure_bucket(bucket)
        self.client.put_object(
            bucket, key, stream, length, content_type=content_type, part_size=16 * 1024 * 1024 if length < 0 else 0
        )

    def put_file(self, uri: str, path: str | os.PathLike) -> None:
        with open(path, "rb") as fh:
            self.put_stream(uri, fh, os.path.getsize(path))

    def get_bytes(self, uri: str, max_bytes: int = 0) -> bytes:
        """The object's bytes; with ``max_bytes`` > 0 a larger object is refused (:class:`ObjectTooLarge`)
        after a HEAD, before any of it is read, and the read itself stops at the limit (the object may
        grow in between)."""
        bucket, key = parse_uri(uri)
        if bucket is None:
            with open(key, "rb") as fh:
                if max_bytes:
                    _check_size(uri, os.fstat(fh.fileno()).st_size, max_bytes)
                return _read_within(uri, fh, max_bytes)
        if max_bytes:
            _check_size(uri, self.client.stat_object(bucket, key).size or 0, max_bytes)
        resp = self.client.get_object(bucket, key)
        try:
            return _read_within(uri, resp, max_bytes)
        finally:
            resp.close()
            resp.release_conn()

    @contextlib.contextmanager
    def open(self, uri: str) -> Iterator[BinaryIO]:
        """A forward-only stream of the object (for tar shards too large to hold in memory)."""
        bucket, key = parse_uri(uri)
        if bucket is None:
            with open(key, "rb") as fh:
                yield fh
            return
        resp = self.client.get_object(bucket, key)
        try:
            yield resp  # type: ignore[misc]  # urllib3's response is a readable binary stream
        finally:
            resp.close()
            resp.release_conn()

    def get_file(self, uri: str, path: str | os.PathLike) -> None:
        bucket, key = parse_uri(uri)
        if bucket is None:
            Path(path).write_bytes(Path(key).read_bytes())
        else:
            self.client.fget_object(bucket, key, str(path))

    def exists(self, uri: str) -> bool:
        bucket, key = parse_uri(uri)
        if bucket is None:
            return Path(key).exists()
        try:
            self.client.stat_object(bucket, key)
            return True
        except S3Error as e:
            if is_missing(e):
                return False
            raise

    def list(self, prefix_uri: str) -> Iterator[str]:
        """URIs of all objects under a prefix, sorted by key."""
        bucket, prefix = parse_uri(prefix_uri)
        if bucket is None:
            root = Path(prefix)
            if root.is_file():
                yield str(root)
            elif root.is_dir():
                for p in sorted(root.rglob("*")):
                    if p.is_file() and not p.name.startswith(".tmp-"):
                        yield str(p)
            return
        if not self.client.bucket_exists(bucket):
            return
        for obj in self.client.list_objects(bucket, prefix=prefix, recursive=True):
            yield f"s3://{bucket}/{obj.object_name}"

    def delete(self, uri: str) -> None:
        bucket, key = parse_uri(uri)
        if bucket is None:
            Path(key).unlink(missing_ok=True)
        else:
            self.client.remove_object(bucket, key)
