"""Icon-set extractor on the miniature sets cut from the real `@iconify-json/*` packages."""

import io
import json

import pytest
from PIL import Image

from mofi_platform.databuild.extractors import EXTRACTORS
from mofi_platform.databuild.extractors.iconify import icon_svg, icon_text
from mofi_platform.databuild.images import normalize_image
from mofi_platform.databuild.sources import icon_sets, package


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("rocket-launch-outline", "rocket launch"),
        ("animal-cat-24-regular", "animal cat"),
        ("rocket-outline-rounded", "rocket"),
        ("cat-duotone", "cat"),
        ("hierarchy-line-3", "hierarchy"),
        ("google-photos", "google photos"),
        ("vercel-icon", "vercel"),
        ("ambulance-24px", "ambulance"),
        ("24", "24"),  # one word always stays
        ("outline", "outline"),
        ("numeric-1-box", "numeric 1 box"),  # only trailing style words go
    ],
)
def test_icon_names_become_the_words_of_the_thing(name, text):
    assert icon_text(name) == text


def render(pair, size=64):
    img = normalize_image(pair.data, is_svg=pair.is_svg, max_pixels=40_000_000, image_size=size)
    return Image.open(io.BytesIO(img.data)).convert("L")


def test_every_corpus_icon_set_is_an_extractor_with_its_pinned_licence(dirs):
    assert len(icon_sets()) >= 15
    for p in icon_sets():
        pairs = list(EXTRACTORS[p.key](dirs))
        assert pairs and all(x.source == p.key and x.licence == p.licence and x.is_svg for x in pairs), p.key
        assert all(x.original_path.startswith("icons.json#") for x in pairs)


def test_monochrome_icons_render_black_on_white(dirs):
    rocket = next(p for p in EXTRACTORS["mdi"](dirs) if p.original_path == "icons.json#rocket")
    assert rocket.text == "rocket" and b"currentColor" in rocket.data
    im = render(rocket)
    assert im.getextrema() == (0, 255)  # black drawing...
    assert im.getpixel((0, 0)) == 255  # ...on a white ground
    colour = next(p for p in EXTRACTORS["streamline-flex-color"](dirs) if p.text == "rocket")
    assert (
        len(
            set(
                Image.open(
                    io.BytesIO(normalize_image(colour.data, is_svg=True, max_pixels=10**7, image_size=64).data)
                ).getdata()
            )
        )
        > 8
    )


def test_hidden_icons_are_skipped_and_pixel_sizes_give_one_drawing(dirs):
    fluent = json.loads((dirs("fluent") / "icons.json").read_text())["icons"]
    pairs = {p.original_path: p for p in EXTRACTORS["fluent"](dirs)}
    assert {n for n in fluent if n.startswith("rocket-")} >= {"rocket-16-regular", "rocket-28-regular"}
    assert {k for k in pairs if "rocket" in k} == {"icons.json#rocket-28-filled", "icons.json#rocket-28-regular"}
    hidden = [n for n, icon in fluent.items() if icon.get("hidden")]
    assert hidden and not any(f"icons.json#{n}" in pairs for n in hidden)


def test_svg_uses_the_icon_size_or_the_set_default():
    doc = icon_svg({"body": "<path d='M0 0h4v4z'/>", "width": 20, "left": 2}, 24, 24).decode()
    assert 'viewBox="2 0 20 24"' in doc and 'width="20" height="24"' in doc and 'color="#000"' in doc


def test_icon_set_keys_name_their_package():
    for p in icon_sets():
        assert p.name == f"@iconify-json/{p.key}" and p.client == "npm"
    assert package("mdi").licence.startswith("Apache-2.0")
