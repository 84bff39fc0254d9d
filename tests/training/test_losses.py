"""Losses against direct reference computations, including the margin and a real 2-process gather."""

from __future__ import annotations

import math

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from mofi_platform.training.losses import LossConfig, MofiLoss, cosface_chance_loss, cosface_loss

S, M = 16.0, 0.3


def _cos(b: int, c: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, c, generator=g) * 2 - 1


def test_single_positive_cosface_is_margin_cross_entropy():
    cos = _cos(6, 9)
    y = torch.tensor([0, 3, 8, 1, 1, 5])
    onehot = F.one_hot(y, 9).bool()
    ref = F.cross_entropy(S * (cos - M * onehot.float()), y)
    assert torch.allclose(cosface_loss(cos, onehot, S, M), ref, atol=1e-5)
    # the margin is what makes it CosFace: without it, it is plain scaled-cosine softmax, and lower
    plain = F.cross_entropy(S * cos, y)
    assert torch.allclose(cosface_loss(cos, onehot, S, 0.0), plain, atol=1e-5)
    assert cosface_loss(cos, onehot, S, M) > plain


def test_multi_positive_cosface_matches_a_direct_loop():
    cos = _cos(4, 7, seed=1)
    targets = torch.zeros(4, 7, dtype=torch.bool)
    targets[0, [1]] = True
    targets[1, [2, 4, 6]] = True
    targets[3, [0, 5]] = True  # image 2 has no class in the table: excluded
    per_image = []
    for i in range(4):
        pos = [c for c in range(7) if targets[i, c]]
        neg = [c for c in range(7) if not targets[i, c]]
        if not pos:
            continue
        terms = []
        for p in pos:
            lp = S * (cos[i, p].item() - M)
            denom = math.exp(lp) + sum(math.exp(S * cos[i, n].item()) for n in neg)
            terms.append(-(lp - math.log(denom)))
        per_image.append(sum(terms) / len(terms))
    ref = sum(per_image) / len(per_image)
    assert cosface_loss(cos, targets, S, M).item() == pytest.approx(ref, rel=1e-5)


def test_cosface_without_any_positive_is_zero_with_gradient_path():
    cos = _cos(3, 4).requires_grad_()
    loss = cosface_loss(cos, torch.zeros(3, 4, dtype=torch.bool), S, M)
    loss.backward()
    assert loss.item() == 0.0 and torch.count_nonzero(cos.grad) == 0


def _features(n: int, d: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(n, d, generator=g), dim=-1), F.normalize(torch.randn(n, d, generator=g), dim=-1)


def _clip_reference(img: torch.Tensor, txt: torch.Tensor, scale: float) -> torch.Tensor:
    labels = torch.arange(img.shape[0])
    logits = scale * img @ txt.T
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2


def test_recipes_weight_the_two_losses():
    img, txt = _features(5, 8, seed=2)
    cos = _cos(5, 3, seed=3)
    targets = F.one_hot(torch.tensor([0, 1, 2, 0, 1]), 3).bool()
    scale = torch.tensor(10.0)
    cls = cosface_loss(cos, targets, 32.0, 0.2)
    con = _clip_reference(img, txt, 10.0)
    out = MofiLoss(LossConfig("multitask"))(img, txt, scale, cos, targets)
    assert torch.allclose(out["loss"], 0.5 * cls + 0.5 * con, atol=1e-5)
    assert torch.allclose(out["contrastive_loss"], con, atol=1e-5)
    assert torch.allclose(MofiLoss(LossConfig("supervised"))(img, class_cos=cos, targets=targets)["loss"], cls)
    assert torch.allclose(MofiLoss(LossConfig("contrastive"))(img, txt, scale)["loss"], con, atol=1e-5)
    with pytest.raises(ValueError, match="needs class cosines"):
        MofiLoss(LossConfig("supervised"))(img)
    with pytest.raises(ValueError, match="unknown recipe"):
        MofiLoss(LossConfig("nope"))


WORLD, LOCAL, DIM, SCALE = 2, 3, 8, 7.0


def _rank_main(rank: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        img, txt = _features(WORLD * LOCAL, DIM, seed=4)
        mine = slice(rank * LOCAL, (rank + 1) * LOCAL)
        img_r = img[mine].clone().requires_grad_()
        txt_r = txt[mine].clone().requires_grad_()
        loss = MofiLoss(LossConfig("contrastive"), rank=rank, world_size=WORLD)(img_r, txt_r, torch.tensor(SCALE))[
            "loss"
        ]
        loss.backward()
        torch.save({"loss": loss.detach(), "img_grad": img_r.grad, "txt_grad": txt_r.grad}, f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_contrastive_loss_gathers_across_two_gloo_ranks(tmp_path):
    mp.spawn(_rank_main, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=WORLD, join=True)
    img, txt = _features(WORLD * LOCAL, DIM, seed=4)
    img.requires_grad_()
    txt.requires_grad_()
    ref = _clip_reference(img, txt, SCALE)
    ref.backward()
    results = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD)]
    # each rank scores its rows against the whole global batch: the rank mean is the global loss
    assert torch.allclose(sum(r["loss"] for r in results) / WORLD, ref.detach(), atol=1e-5)
    # gradients flow back through the gather: rank r gets d(sum of rank losses)/d(its rows);
    # DDP's gradient averaging then divides by the world size
    for r, res in enumerate(results):
        mine = slice(r * LOCAL, (r + 1) * LOCAL)
        assert torch.allclose(res["img_grad"], WORLD * img.grad[mine], atol=1e-5)
        assert torch.allclose(res["txt_grad"], WORLD * txt.grad[mine], atol=1e-5)


def test_class_weight_overrides_the_recipes_lambda():
    img, txt = _features(5, 8, seed=4)
    cos = _cos(5, 3, seed=5)
    targets = F.one_hot(torch.tensor([0, 1, 2, 0, 1]), 3).bool()
    out = MofiLoss(LossConfig("multitask", class_weight=0.8))(img, txt, torch.tensor(10.0), cos, targets)
    assert torch.allclose(out["loss"], 0.8 * out["class_loss"] + 0.2 * out["contrastive_loss"], atol=1e-6)
    assert LossConfig("multitask").lam == 0.5 and LossConfig("multitask", class_weight=1.0).uses_text is False
    assert LossConfig("contrastive", class_weight=0.5).uses_classes  # multitask on alt-text
    with pytest.raises(ValueError, match="does not fit recipe supervised"):
        LossConfig("supervised", class_weight=0.5)  # no texts to weigh against
    with pytest.raises(ValueError, match="does not fit"):
        LossConfig("multitask", class_weight=1.5)


def test_chance_level_is_the_loss_of_a_head_that_scores_every_class_alike():
    for c, positives in ((619, 1), (9, 1), (9, 3)):
        targets = torch.zeros(4, c, dtype=torch.bool)
        targets[:, :positives] = True
        for value in (-0.3, 0.0, 0.7):  # whatever the common cosine is
            cos = torch.full((4, c), value)
            assert cosface_loss(cos, targets, 32.0, 0.2).item() == pytest.approx(
                cosface_chance_loss(c, 32.0, 0.2, positives), rel=1e-5
            )
    assert cosface_chance_loss(619, 32.0, 0.2) == pytest.approx(math.log(618) + 6.4, abs=0.01)  # ~ ln(C) + s*m
    # a head that ranks each positive first by the margin is far below it
    cos = torch.full((4, 9), -0.5)
    cos[:, 0] = 0.9
    assert cosface_loss(cos, F.one_hot(torch.zeros(4, dtype=torch.long), 9).bool(), S, M) < 0.1 * cosface_chance_loss(
        9, S, M
    )


def test_loss_options_are_checked():
    assert LossConfig("multitask").entity_text == "name_description" and LossConfig("multitask").learn_temperature
    with pytest.raises(ValueError, match="unknown entity text 'alt'"):
        LossConfig("multitask", entity_text="alt")
    with pytest.raises(ValueError, match="temperature must be > 0"):
        LossConfig("contrastive", temperature=0.0)
