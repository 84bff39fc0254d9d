"""MOFI training: model factory, losses, I2E data, trainer, torchx component, evaluation, inference.

``create_model_and_transforms`` and ``get_tokenizer`` are the entry points other packages use to
build models by registered name (see ``training.models``).
"""

from training.models import create_model_and_transforms, get_tokenizer, model_names

__all__ = ["create_model_and_transforms", "get_tokenizer", "model_names"]
