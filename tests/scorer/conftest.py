"""Scorer test fixtures: the tiny registered model, wrapped for inference, saved as a checkpoint."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_embedding_model():
    import torch

    from mofi_platform.training import create_model_and_transforms, get_tokenizer
    from mofi_platform.training.inference import EmbeddingModel

    torch.manual_seed(0)
    model, _, eval_tf = create_model_and_transforms("mofi-tiny-vit")
    return EmbeddingModel.from_model(model, eval_tf, get_tokenizer("mofi-tiny-vit"), "tiny@test", "mofi-tiny-vit")
