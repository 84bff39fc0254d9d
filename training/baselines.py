"""The no-training baseline: frozen ImageNet EfficientNet-Lite0 features (pooled 1280-d trunk output).

This is the "what do we gain over an ImageNet backbone" row of the ablation: the same pretrained
tower MOFI starts from, before any MOFI training, with its own global-average-pooled features
(no projection, which would be random before training).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import timm
import torch
from PIL import Image

from mofi_platform.training.models import map_efficientnet_lite0_weights, model_spec

__all__ = ["IMAGE_SIZE", "imagenet_effnet_lite0_embedder"]

#: The input size the ImageNet weights were trained at (the baseline's size unless a model's is given).
IMAGE_SIZE = 224


def imagenet_effnet_lite0_embedder(image_size: int = IMAGE_SIZE) -> Callable[[list[Image.Image]], np.ndarray]:
    """images -> (n, 1280) float32 L2-normalised, preprocessed exactly as the MOFI default model."""
    from open_clip.transform import PreprocessCfg, image_transform_v2

    spec = model_spec("mofi-effnet-lite0-minilm")
    net = timm.create_model("tf_efficientnet_lite0", num_classes=0).eval()
    net.load_state_dict(map_efficientnet_lite0_weights(net.state_dict()), strict=True)
    transform = image_transform_v2(PreprocessCfg(size=image_size, mean=spec.mean, std=spec.std), is_train=False)

    def embed(images: list[Image.Image]) -> np.ndarray:
        with torch.inference_mode():
            feats = net(torch.stack([transform(im.convert("RGB")) for im in images]))
        return torch.nn.functional.normalize(feats, dim=-1).numpy().astype(np.float32)

    return embed
