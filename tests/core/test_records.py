"""A pair's declared image type must match its bytes: the scorer and the writer read images through one check."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from mofi.i2e.records import InvalidRecord, pair_image_bytes, sniffed_mime
from mofi.v1 import records_pb2


def _encoded(fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 30, 30)).save(buf, format=fmt)
    return buf.getvalue()


@pytest.mark.parametrize("fmt,mime", [("PNG", "image/png"), ("JPEG", "image/jpeg"), ("WEBP", "image/webp")])
def test_signature_names_the_format(fmt, mime):
    assert sniffed_mime(_encoded(fmt)) == mime


def test_not_an_image_has_no_type():
    assert sniffed_mime(b"<svg xmlns='http://www.w3.org/2000/svg'/>") is None


@pytest.mark.parametrize(
    "declared,fmt,reason",
    [
        ("image/png", "PNG", None),
        ("image/jpg", "JPEG", None),  # the common misspelling names the same format
        ("IMAGE/JPEG", "JPEG", None),
        ("image/jpeg", "PNG", "image declared as 'image/jpeg' but its bytes are image/png"),
        ("image/png", "WEBP", "image declared as 'image/png' but its bytes are image/webp"),
        ("image/svg+xml", "PNG", "unsupported image mime 'image/svg+xml'"),
        ("", "PNG", "unsupported image mime ''"),
    ],
)
def test_declared_mime_must_match_the_bytes(declared, fmt, reason):
    data = _encoded(fmt)
    pair = records_pb2.Pair(pair_id="p", image_mime=declared, image_bytes=data)
    if reason is None:
        assert pair_image_bytes(pair, fetch=lambda uri: b"") == data
    else:
        with pytest.raises(InvalidRecord) as err:
            pair_image_bytes(pair, fetch=lambda uri: b"")
        assert str(err.value) == reason


def test_bytes_that_are_no_image_format_are_named():
    pair = records_pb2.Pair(pair_id="p", image_mime="image/png", image_bytes=b"GIF89a....")
    with pytest.raises(InvalidRecord, match="declared as 'image/png' but its bytes are not PNG, JPEG or WebP"):
        pair_image_bytes(pair, fetch=lambda uri: b"")
