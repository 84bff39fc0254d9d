"""A small synthetic I2E snapshot in the test S3: images whose entity is visible (a shape in a colour).

Built with the real ``mofi.i2e`` writer, so training reads exactly what the writer stage produces.
Each image shows one shape; images also carry a second, rarer entity (its colour) so the
multi-label path is exercised.
"""

from __future__ import annotations

import io
import random

import pytest
from PIL import Image, ImageDraw

from mofi.i2e import I2ESample, create_snapshot, snapshot_uri, write_shard

SHAPES = {
    "wn:circle": ("circle", "ellipse in which the two axes are of equal length"),
    "wn:square": ("square", "a plane rectangle with four equal sides"),
    "wn:triangle": ("triangle", "a three-sided polygon"),
    "wn:cross": ("cross", "two bars crossing at right angles"),
}
COLOURS = {"wn:red": ("red", "the hue of blood"), "wn:blue": ("blue", "the colour of the clear sky")}
RGB = {"wn:red": (220, 30, 30), "wn:blue": (30, 60, 220)}


def draw(shape: str, colour: str, rng: random.Random, size: int = 48) -> bytes:
    img = Image.new("RGB", (size, size), tuple(rng.randrange(180, 256) for _ in range(3)))
    d = ImageDraw.Draw(img)
    c = size // 2 + rng.randrange(-4, 5)
    r = rng.randrange(12, 20)
    fill = RGB[colour]
    if shape == "wn:circle":
        d.ellipse((c - r, c - r, c + r, c + r), fill=fill)
    elif shape == "wn:square":
        d.rectangle((c - r, c - r, c + r, c + r), fill=fill)
    elif shape == "wn:triangle":
        d.polygon([(c, c - r), (c - r, c + r), (c + r, c + r)], fill=fill)
    else:
        d.rectangle((c - r, c - 4, c + r, c + 4), fill=fill)
        d.rectangle((c - 4, c - r, c + 4, c + r), fill=fill)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def make_samples(n: int, seed: int = 0) -> list[I2ESample]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        shape = list(SHAPES)[i % len(SHAPES)]
        colour = list(COLOURS)[(i // len(SHAPES)) % 2]
        entities = [{"id": shape, "name": SHAPES[shape][0], "description": SHAPES[shape][1], "score": 0.4}]
        if i % 3 == 0:
            entities.append({"id": colour, "name": COLOURS[colour][0], "description": COLOURS[colour][1], "score": 0.3})
        meta = {
            "text": f"a {COLOURS[colour][0]} {SHAPES[shape][0]} on a plain background",
            "source": "test",
            "licence": "CC0-1.0",
            "entities": entities,
            "scorer_model": "test",
        }
        out.append(I2ESample(pair_id=f"p{seed:02d}{i:04d}", image_bytes=draw(shape, colour, rng), ext="png", meta=meta))
    return out


@pytest.fixture()
def i2e_snapshot(settings, store):
    """(settings, snapshot_uri): 3 shards x 32 samples, val 10%, classes with >= 2 images."""
    prefix = f"s3://{settings.s3.i2e_bucket}/shards"
    for shard in range(3):
        write_shard(store, f"{prefix}/shard-{shard:04d}.tar", make_samples(32, seed=shard))
    uri = snapshot_uri(settings.s3.i2e_bucket, "v-test")
    create_snapshot(store, prefix + "/", uri, min_count=2, val_percent=10)
    return settings, uri
