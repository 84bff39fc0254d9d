"""CPU tuning of the scorer's image tower: same embeddings and the same kept/dropped verdicts, or untouched."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from mofi.v1 import records_pb2
from mofi_platform.services.common.images import ImageDecoder
from mofi_platform.services.scorer import tuning
from mofi_platform.services.scorer.candidates import CandidateScorer
from mofi_platform.services.scorer.filtering import candidate_texts
from mofi_platform.services.scorer.scoring import ClipScorer
from mofi_platform.services.scorer.tuning import TrimmedTokenizer, tune_for_cpu
from tests.writer.support import candidate_pair

IMAGE_SIZE = 64  # the convolutional tower accepts any size; small keeps the test quick


def _conv_model(name: str):
    """An EfficientNet-Lite0 + MiniLM model with BatchNorm statistics unlike the identity (so folding matters)."""
    from mofi_platform.training import create_model_and_transforms, get_tokenizer
    from mofi_platform.training.inference import EmbeddingModel

    torch.manual_seed(0)
    model, _, eval_tf = create_model_and_transforms(name, image_size=IMAGE_SIZE)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.visual.modules():
            if hasattr(m, "running_var") and m.running_var is not None:
                n = m.running_var.shape[0]
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.5)
                m.running_var.copy_(torch.rand(n, generator=g) * 2 + 0.2)
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.randn(n, generator=g) * 0.2)
    return EmbeddingModel.from_model(model, eval_tf, get_tokenizer(name), f"{name}@test", name)


def _images() -> list[Image.Image]:
    rng = np.random.default_rng(3)
    return [Image.fromarray(rng.integers(0, 256, (48 + 8 * i, 40, 3), dtype=np.uint8)) for i in range(5)] + [
        Image.new("RGB", (90, 30), (200, 40, 10))
    ]


@pytest.fixture(scope="module", params=["mofi-lit-effnet-minilm", "mofi-effnet-lite0-minilm"])
def conv_model(request):
    return _conv_model(request.param)


def test_tuned_tower_gives_the_same_embeddings_and_verdicts(conv_model):
    cands = [candidate_pair(i, n_candidates=3).SerializeToString() for i in range(10)]

    def verdicts(threshold: float):
        core = CandidateScorer(ClipScorer(conv_model), threshold, lambda uri: b"", ImageDecoder(1 << 20, 1 << 20), 2000)
        return core.process(cands)

    before_emb = conv_model.embed_images(_images())
    texts = [e for v in cands for e in candidate_texts(records_pb2.CandidatePair.FromString(v))]
    before_text = conv_model.embed_texts(texts)
    threshold = float(np.median([e.clip_score for v in verdicts(-1.0) for e in v.record.entities]))
    want = verdicts(threshold)  # kept and dropped entities on both sides of the threshold
    assert sum(len(v.record.entities) for v in want) and sum(len(v.record.dropped) for v in want)

    report = tune_for_cpu(conv_model)

    assert report.image_tuned and report.folded == 49 and report.text_trimmed, report
    assert report.image_diff <= tuning.TOLERANCE and report.text_diff <= tuning.TOLERANCE
    assert not any(hasattr(m, "running_var") for m in conv_model.model.visual.modules())  # every BatchNorm folded
    np.testing.assert_allclose(conv_model.embed_images(_images()), before_emb, atol=1e-5)
    np.testing.assert_allclose(conv_model.embed_texts(texts), before_text, atol=1e-5)
    assert conv_model.tokenizer(["tiger"]).shape[1] < conv_model.tokenizer.tokenizer(["tiger"]).shape[1]
    for w, g in zip(want, verdicts(threshold)):
        assert w.kind is g.kind
        assert [e.entity_id for e in w.record.entities] == [e.entity_id for e in g.record.entities]
        assert [e.entity_id for e in w.record.dropped] == [e.entity_id for e in g.record.dropped]
        np.testing.assert_allclose(
            [e.clip_score for e in g.record.entities], [e.clip_score for e in w.record.entities], atol=1e-5
        )


def test_a_fold_that_changes_embeddings_is_not_used(monkeypatch):
    model = _conv_model("mofi-effnet-lite0-minilm")
    original = model.model.visual
    want = model.embed_images(_images())

    def wrong_fold(tower):  # e.g. a BatchNorm that does not directly follow its conv
        for m in tower.modules():
            if isinstance(m, torch.nn.Conv2d):
                with torch.no_grad():
                    m.weight.mul_(1.5)
        return 1

    monkeypatch.setattr(tuning, "fold_batchnorm", wrong_fold)
    report = tune_for_cpu(model)
    assert not report.image_tuned and "differ" in report.image_note
    assert model.model.visual is original
    np.testing.assert_array_equal(model.embed_images(_images()), want)


def test_a_transformer_tower_is_left_alone(tiny_embedding_model):
    visual = tiny_embedding_model.model.visual
    report = tune_for_cpu(tiny_embedding_model)
    assert not report.image_tuned and report.image_note == "no BatchNorm after a convolution"
    assert not report.text_trimmed and report.text_note == "not a Hugging Face text tower"
    assert tiny_embedding_model.model.visual is visual


def test_trimmed_tokenizer_cuts_only_columns_that_are_padding_in_every_text():
    ids = torch.tensor([[101, 7, 102, 0, 0, 0], [101, 8, 9, 10, 102, 0]])
    trimmed = TrimmedTokenizer(lambda texts: ids[: len(texts)], pad_id=0)
    assert trimmed(["a", "b"]).tolist() == [[101, 7, 102, 0, 0], [101, 8, 9, 10, 102]]
    assert trimmed(["a"]).tolist() == [[101, 7, 102]]
    assert TrimmedTokenizer(lambda texts: torch.zeros(2, 4, dtype=torch.long), 0)(["", ""]).shape == (2, 1)
