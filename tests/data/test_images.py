import io

import pytest
from PIL import Image

from mofi_platform.databuild.fixtures import fixture_bad_dir
from mofi_platform.databuild.images import Rejected, normalize_image

LIMITS = dict(max_pixels=40_000_000, image_size=64)


@pytest.mark.parametrize(
    "name, reason",
    [
        ("corrupt.png", "unreadable"),
        ("not_an_image.png", "unreadable"),
        ("truncated.jpg", "corrupt"),
        ("bomb.png", "too_many_pixels"),
        ("empty.png", "empty_file"),
        ("tiny.png", "too_small"),
    ],
)
def test_bad_images_are_rejected_with_a_reason(name, reason):
    with pytest.raises(Rejected) as err:
        normalize_image((fixture_bad_dir() / name).read_bytes(), **LIMITS)
    assert err.value.reason == reason


def test_broken_svg_is_a_render_failure():
    with pytest.raises(Rejected) as err:
        normalize_image((fixture_bad_dir() / "broken.svg").read_bytes(), is_svg=True, **LIMITS)
    assert err.value.reason == "svg_render_failed"


def test_pixel_cap_applies_before_decoding():
    data = (fixture_bad_dir() / "grayscale.png").read_bytes()  # 40x30 = 1200 px
    with pytest.raises(Rejected) as err:
        normalize_image(data, max_pixels=1000, image_size=64)
    assert err.value.reason == "too_many_pixels"


@pytest.mark.parametrize("name", ["cmyk.jpg", "grayscale.png", "alpha.png", "palette.gif"])
def test_unusual_modes_become_rgb(name):
    out = normalize_image((fixture_bad_dir() / name).read_bytes(), **LIMITS)
    with Image.open(io.BytesIO(out.data)) as im:
        assert im.mode == "RGB" and im.size == (40, 30)


def test_alpha_is_flattened_onto_white_and_photos_become_jpeg():
    out = normalize_image((fixture_bad_dir() / "alpha.png").read_bytes(), **LIMITS)
    with Image.open(io.BytesIO(out.data)) as im:
        assert im.getpixel((0, 0)) == (255, 255, 255)  # transparent corner
        assert im.getpixel((20, 15)) == (0, 0, 255)  # opaque centre
    photo = normalize_image((fixture_bad_dir() / "cmyk.jpg").read_bytes(), photo=True, **LIMITS)
    assert photo.ext == "jpg" and photo.mime == "image/jpeg" and photo.data[:2] == b"\xff\xd8"


def test_large_images_are_downscaled_keeping_aspect():
    buf = io.BytesIO()
    Image.new("RGB", (400, 100), (10, 20, 30)).save(buf, "PNG")
    out = normalize_image(buf.getvalue(), **LIMITS)
    assert (out.width, out.height) == (64, 16)
