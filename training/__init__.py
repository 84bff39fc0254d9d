"""MOFI training: model factory, losses, I2E data, trainer, torchx component, evaluation, inference.

``create_model_and_transforms`` and ``get_tokenizer`` are the entry points other packages use to
build models by registered name (see ``mofi_platform.training.models``). They load on first use (PEP 562), so
light modules such as ``mofi_platform.training.curves`` import without torch and open_clip.
"""

from typing import Any

__all__ = ["create_model_and_transforms", "get_tokenizer", "model_names"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from mofi_platform.training import models

        return getattr(models, name)
    raise AttributeError(f"module 'training' has no attribute {name!r}")
