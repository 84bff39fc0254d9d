"""Kafka record values -> ``mofi.v1`` messages -> I2E shard samples, with a reason for every rejection.

Why in the core: the scorer reads candidate pairs, the writer and the indexer read I2E records, and
all three read a pair's image inline or by reference; one parser gives them the same dead-letter
reasons.
"""

from __future__ import annotations

from collections.abc import Callable

from google.protobuf.message import DecodeError, Message

from mofi.i2e.shards import I2ESample
from mofi.objstore import is_transient
from mofi.v1 import records_pb2

__all__ = ["InvalidRecord", "MIME_EXT", "sniffed_mime", "parse_record", "pair_image_bytes", "record_to_sample"]

MIME_EXT = {"image/png": "png", "image/jpeg": "jpg", "image/jpg": "jpg", "image/webp": "webp"}


def sniffed_mime(data: bytes) -> str | None:
    """The mime type the bytes' signature shows, for the formats a pair may carry (else None)."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


class InvalidRecord(ValueError):
    """The record cannot become an I2E sample; ``str(e)`` is the dead-letter reason."""


def parse_record(value: bytes | None, message_type: type[Message] = records_pb2.I2ERecord) -> Message:
    """A Kafka record value as ``message_type`` (any mofi.v1 record), or :class:`InvalidRecord`."""
    if not value:
        raise InvalidRecord("empty record")
    rec = message_type()
    try:
        rec.ParseFromString(value)
    except DecodeError as e:
        raise InvalidRecord(f"not a {message_type.DESCRIPTOR.full_name}: {e}") from None
    return rec


def pair_image_bytes(pair: records_pb2.Pair, fetch: Callable[[str], bytes], max_bytes: int = 0) -> bytes:
    """The encoded image of a pair, inline or read by reference (``max_bytes`` > 0 bounds a reference).

    The declared ``image_mime`` must be one of :data:`MIME_EXT` and match the bytes' signature: a
    mismatch is a broken record (the shard would name the file wrongly), not something to guess past.
    """
    which = pair.WhichOneof("image")
    if which == "image_ref":
        ref = pair.image_ref
        if max_bytes and ref.size_bytes > max_bytes:
            raise InvalidRecord(f"image of {ref.size_bytes} bytes exceeds the limit of {max_bytes}")
        try:
            image = fetch(ref.uri)
        except Exception as e:  # a missing or unreadable object is a property of this record...
            if is_transient(e):  # ...an S3 outage is not: the caller retries the record
                raise
            raise InvalidRecord(f"image {ref.uri} unreadable: {e}") from None
    else:
        image = pair.image_bytes if which == "image_bytes" else b""
    if not image:
        raise InvalidRecord("record has no image")
    declared = pair.image_mime.lower()
    if declared not in MIME_EXT:
        raise InvalidRecord(f"unsupported image mime {pair.image_mime!r}")
    actual = sniffed_mime(image)
    if actual is None or MIME_EXT[actual] != MIME_EXT[declared]:
        shown = actual or "not PNG, JPEG or WebP"
        raise InvalidRecord(f"image declared as {pair.image_mime!r} but its bytes are {shown}")
    return image


def record_to_sample(rec: records_pb2.I2ERecord, fetch: Callable[[str], bytes]) -> I2ESample:
    """Build the shard sample; ``fetch`` reads an image stored by reference (``s3://`` URI)."""
    pair = rec.pair
    if not pair.pair_id:
        raise InvalidRecord("record has no pair id")
    if not rec.entities:
        raise InvalidRecord("record has no kept entity (the scorer drops such pairs)")
    image = pair_image_bytes(pair, fetch)  # checks the mime against the bytes
    ext = MIME_EXT[pair.image_mime.lower()]
    meta = {
        "text": pair.text,
        "source": pair.source,
        "licence": pair.licence,
        "original_path": pair.original_path,
        "scorer_model": rec.scorer_model,
        "kb_version": rec.kb_version,  # "" for records of stages older than the field
        "entities": [
            {
                "id": e.entity_id,
                "name": e.name,
                "description": e.description,
                "score": round(float(e.clip_score), 6),
                "link_score": round(float(e.link_score), 6),
                "method": e.method,
            }
            for e in rec.entities
        ],
        # the candidates the scorer dropped for this image (below the threshold), best first, as in
        # the no-entity records (mofi_platform.services.scorer.drops): kept vs dropped per image
        "dropped": [{"id": e.entity_id, "name": e.name, "score": round(float(e.clip_score), 6)} for e in rec.dropped],
    }
    return I2ESample(pair_id=pair.pair_id, image_bytes=image, ext=ext, meta=meta)
