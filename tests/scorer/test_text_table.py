"""The scorer's entity-text embeddings from NER's vector table: the same scores as its own text tower, used
only when the tower checks out, and only for texts both paths tokenise alike."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from mofi_platform.services.common.entity_vectors import MAX_TOKENS, EntityVectors
from mofi_platform.services.ner.encoder import TextEncoder
from mofi_platform.services.scorer.scoring import ClipScorer
from mofi_platform.services.scorer.text_table import projected_table

TEXTS = [
    "tiger: large feline of forests in most of Asia having a tawny coat with black stripes",
    "Paris: the capital and largest city of France",
    "sailboat: a small sailing vessel; usually with a single mast",
    "rocket: any vehicle self-propelled by a rocket engine",
    "grinning face",
    "mackerel: any of various fishes of the family Scombridae",
    "teapot: pot for brewing tea; usually has a spout and handle",
    "lighthouse: a tower with a light that gives warning of shoals to passing ships",
]


@pytest.fixture(scope="module")
def lit_model():
    """The scorer's architecture with its real frozen towers (MiniLM, EfficientNet-Lite0); random projections."""
    from mofi_platform.training import create_model_and_transforms, get_tokenizer
    from mofi_platform.training.inference import EmbeddingModel

    torch.manual_seed(0)
    model, _, eval_tf = create_model_and_transforms("mofi-lit-effnet-minilm", pretrained_towers=True)
    tok = get_tokenizer("mofi-lit-effnet-minilm")
    return EmbeddingModel.from_model(model, eval_tf, tok, "lit@test", "mofi-lit-effnet-minilm")


@pytest.fixture(scope="module")
def table():
    encoder = TextEncoder()
    return EntityVectors.build(TEXTS + ["a text  with   odd spacing: kept out"], encoder.encode)


def _images(n: int) -> list[Image.Image]:
    rng = np.random.default_rng(1)
    return [Image.fromarray(rng.integers(0, 255, (96, 96, 3), dtype=np.uint8)) for _ in range(n)]


def test_scores_from_the_table_match_the_text_tower(lit_model, table):
    projected = projected_table(lit_model, table, MAX_TOKENS, TEXTS[:4])
    assert projected is not None
    items = [(im, TEXTS) for im in _images(3)]
    with_table = ClipScorer(lit_model, text_table=projected).score_many(items)
    without = ClipScorer(lit_model).score_many(items)
    assert projected.served == len(TEXTS)  # every text came from the table, none from a text pass
    for a, b in zip(with_table, without):
        np.testing.assert_allclose(a, b, atol=2e-3)


def test_texts_the_tokenizers_would_see_differently_go_through_the_model(lit_model, table):
    projected = projected_table(lit_model, table, MAX_TOKENS, TEXTS[:4])
    odd = "a text  with   odd spacing: kept out"  # in the table, but the scorer's tokenizer collapses spaces
    long = "word " * 40  # not whitespace-clean either; and too long for the scorer's 32 tokens
    assert projected.lookup([odd, long, TEXTS[0]]).keys() == {TEXTS[0]}
    scorer = ClipScorer(lit_model, text_table=projected)
    got = scorer.score_many([(_images(1)[0], [odd])])[0]
    want = ClipScorer(lit_model).score_many([(_images(1)[0], [odd])])[0]
    np.testing.assert_allclose(got, want, atol=1e-5)  # the model's own embedding, exactly


def test_a_text_tower_that_differs_from_the_tables_encoder_is_refused(lit_model, table):
    layer = lit_model.model.text.transformer.encoder.layer[0].attention.self.query
    saved = layer.weight.detach().clone()
    try:
        with torch.no_grad():
            layer.weight.add_(0.05 * torch.randn_like(layer.weight))  # a fine-tuned text tower, say
        assert projected_table(lit_model, table, MAX_TOKENS, TEXTS[:4]) is None
    finally:
        with torch.no_grad():
            layer.weight.copy_(saved)
    assert projected_table(lit_model, table, MAX_TOKENS, TEXTS[:4]) is not None


def test_no_table_for_a_model_without_a_linear_text_projection(table):
    from mofi_platform.training import create_model_and_transforms, get_tokenizer
    from mofi_platform.training.inference import EmbeddingModel

    model, _, eval_tf = create_model_and_transforms("mofi-tiny-vit")
    tiny = EmbeddingModel.from_model(model, eval_tf, get_tokenizer("mofi-tiny-vit"), "tiny", "mofi-tiny-vit")
    assert projected_table(tiny, table, MAX_TOKENS, TEXTS[:4]) is None
    assert projected_table(tiny, None, MAX_TOKENS, TEXTS[:4]) is None


def test_reload_drops_the_previous_models_table(lit_model, table):
    projected = projected_table(lit_model, table, MAX_TOKENS, TEXTS[:4])
    scorer = ClipScorer(lit_model, text_table=projected)
    scorer.reload(lit_model)
    assert scorer.text_table is None
