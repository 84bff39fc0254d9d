"""The one guarded decoder and thumbnailer every process uses for images it did not make."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from mofi.images import WHITE, ImageRejected, decode_rgb, thumbnail_jpeg
from mofi_platform.databuild.fixtures import fixture_bad_dir


def _encode(im: Image.Image, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt)
    return buf.getvalue()


@pytest.mark.parametrize(
    "data, caps, reason, words",
    [
        (b"", {}, "empty_file", "empty image"),
        (b"x" * 50, {"max_bytes": 10}, "too_many_bytes", "50 bytes exceeds the limit of 10 bytes"),
        (_encode(Image.new("L", (40, 30))), {"max_pixels": 1000}, "too_many_pixels", "40x30 pixels exceeds"),
        (b"\x89PNG\r\n\x1a\nnot really", {}, "unreadable", "cannot decode image"),
        ((fixture_bad_dir() / "truncated.jpg").read_bytes(), {}, "corrupt", "cannot decode image"),
        ((fixture_bad_dir() / "bomb.png").read_bytes(), {}, "too_many_pixels", "cannot decode image"),
    ],
)
def test_refusals_carry_a_countable_reason_and_a_message(data, caps, reason, words):
    with pytest.raises(ImageRejected, match=words) as err:
        decode_rgb(data, **{"max_pixels": 40_000_000, **caps})
    assert err.value.reason == reason and isinstance(err.value, ValueError)


def test_modes_become_rgb_and_alpha_is_dropped_or_flattened():
    rgba = Image.new("RGBA", (20, 10), (0, 0, 255, 0))
    data = _encode(rgba)
    plain = decode_rgb(data, max_pixels=1000)
    assert plain.mode == "RGB" and plain.size == (20, 10) and plain.getpixel((0, 0)) == (0, 0, 255)
    assert decode_rgb(data, max_pixels=1000, background=WHITE).getpixel((0, 0)) == WHITE
    assert decode_rgb(_encode(Image.new("CMYK", (8, 8)), "JPEG"), max_pixels=1000).mode == "RGB"


def test_draft_decodes_a_jpeg_at_reduced_scale_and_upright_applies_exif():
    data = _encode(Image.new("RGB", (800, 400), "red"), "JPEG")
    assert decode_rgb(data, max_pixels=10**6, min_side=100).size == (200, 100)
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees
    buf = io.BytesIO()
    Image.new("RGB", (40, 20)).save(buf, "JPEG", exif=exif)
    assert decode_rgb(buf.getvalue(), max_pixels=10**6).size == (40, 20)
    assert decode_rgb(buf.getvalue(), max_pixels=10**6, upright=True).size == (20, 40)


def test_thumbnail_is_a_bounded_jpeg_and_leaves_the_image_alone():
    image = Image.new("RGB", (300, 150), "green")
    data = thumbnail_jpeg(image, 96, quality=80)
    with Image.open(io.BytesIO(data)) as thumb:
        assert thumb.format == "JPEG" and thumb.size == (96, 48)
    assert image.size == (300, 150)
    with Image.open(io.BytesIO(thumbnail_jpeg(Image.new("RGB", (10, 5)), 96))) as small:
        assert small.size == (10, 5)  # never scaled up
