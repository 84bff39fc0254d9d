"""Decoding at about the model's input size and batching the tensor conversion keep what the model sees.

Corpus-like images (the fixture corpus's own, and the same pictures enlarged to photo size and saved
as JPEG and PNG, where the reduced decode and the JPEG draft matter) are embedded decoded at full size
and decoded for the model's input size: the embeddings agree (cosine >= 0.99) and so do the scorer's
kept/dropped verdicts. The batched conversion gives the eval transform's tensors exactly.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from mofi_platform.databuild.fixtures import load_fixture_pairs
from mofi_platform.services.common.images import decode_image
from mofi_platform.services.scorer.scoring import ClipScorer


def _encode(im: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return buf.getvalue()


@pytest.fixture(scope="module")
def corpus_like() -> list[tuple[bytes, str]]:
    """(encoded image, alt-text): the fixture pairs as stored, then enlarged 6x as JPEG and as PNG."""
    out = []
    for s in load_fixture_pairs():
        out.append((s.image_bytes, s.text))
        with Image.open(io.BytesIO(s.image_bytes)) as im:
            big = im.convert("RGB").resize((im.width * 6, im.height * 6), Image.Resampling.BICUBIC)
        out += [(_encode(big, "JPEG"), s.text), (_encode(big, "PNG"), s.text)]
    return out


def _decode(data: bytes, image_size: int) -> Image.Image:
    return decode_image(data, 1 << 24, 40_000_000, image_size)


def test_reduced_decode_keeps_embeddings_and_verdicts(tiny_embedding_model, corpus_like):
    model = tiny_embedding_model
    full = [_decode(d, 0) for d, _ in corpus_like]
    reduced = [_decode(d, model.image_size) for d, _ in corpus_like]
    shrunk = sum(r.size != f.size for r, f in zip(reduced, full))
    assert shrunk >= len(corpus_like) // 2  # the enlarged copies really were decoded smaller
    assert all(min(r.size) >= 2 * model.image_size or r.size == f.size for r, f in zip(reduced, full))
    cosines = np.sum(model.embed_images(full) * model.embed_images(reduced), axis=1)
    assert cosines.min() >= 0.99, cosines.min()

    texts = [t for _, t in corpus_like[::3]]  # every image against every distinct alt-text
    scorer = ClipScorer(model)
    a = np.stack(scorer.score_many([(im, texts) for im in full]))
    b = np.stack(scorer.score_many([(im, texts) for im in reduced]))
    threshold = float(np.median(a))  # the hardest place for verdicts to agree
    agree = np.mean((a >= threshold) == (b >= threshold))
    assert agree >= 0.99, agree


def test_batched_conversion_is_the_eval_transform(tiny_embedding_model, corpus_like):
    model = tiny_embedding_model
    images = [_decode(d, 0) for d, _ in corpus_like[:12]] + [Image.new("L", (40, 20), 90)]
    want = torch.stack([model.eval_transform(im.convert("RGB")) for im in images])
    assert torch.equal(model.image_batch(images), want)
