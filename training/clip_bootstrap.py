"""`mofi clip bootstrap`: train the offline CLIP scorer LiT-style, and calibrate its threshold.

No CLIP weights exist offline, so the scorer is bootstrapped from two pretrained towers that do:
EfficientNet-Lite0 (ImageNet) and MiniLM-L6 (sentence embeddings), both frozen, joined by two
linear projections trained contrastively (CLIP's InfoNCE) on the raw corpus pairs (config
``mofi-lit-effnet-minilm``).

Why features are computed once: with frozen towers (BatchNorm statistics included) a tower's
pooled output for an image or text never changes, so the towers run once per pair (plus optional
augmented image views) and every epoch trains only the projections on cached features: the whole
bootstrap costs one forward pass over the corpus, minutes on CPU.

The bootstrap freezes the towers itself (everything but the projections and the logit scale), so
any config with a timm image tower and a Hugging Face text tower can be bootstrapped; ``--model``
picks it.

Calibration: on held-out pairs (split by pair-id hash, as I2E snapshots split), the matched
image/alt-text cosines are positives and mismatched pairs negatives; the threshold maximises
TPR - FPR (Youden's J). The report gives both rates (the kept fraction of true and of wrong
texts) and examples of kept and dropped texts. The scorer reads its threshold from settings
(``MOFI_SCORER_THRESHOLD``); the checkpoint carries the calibration for reference.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import click
import numpy as np
import torch
import torch.nn.functional as F
from open_clip.hf_model import HFTextEncoder
from open_clip.loss import ClipLoss
from open_clip.timm_model import TimmModel
from PIL import Image
from tqdm import tqdm

from mofi.i2e import split_of
from mofi.images import ImageRejected, decode_rgb
from mofi.objstore import ObjectStore
from mofi.settings import S3Settings
from mofi_platform.training.checkpoint import save_checkpoint
from mofi_platform.training.models import create_model_and_transforms, get_tokenizer

__all__ = [
    "BootstrapConfig",
    "BootstrapPair",
    "Calibration",
    "FrozenFeatures",
    "extract_features",
    "train_projections",
    "calibrate",
    "bootstrap",
    "clip",
]

log = logging.getLogger(__name__)


@dataclass
class BootstrapConfig:
    model: str = "mofi-lit-effnet-minilm"
    image_size: int = 160  # the convolutional tower accepts any size; 160 px keeps CPU extraction quick
    views: int = 1  # image views per pair: the eval crop, plus views-1 augmented ones
    epochs: int = 80
    batch_size: int = 256
    lr: float = 2e-3
    weight_decay: float = 0.05
    val_percent: float = 10.0
    min_val_pairs: int = 20  # fewer held-out pairs than this: calibrate on all pairs (and say so)
    max_pairs: int = 0  # 0 = every pair of the source
    seed: int = 0


@dataclass(frozen=True)
class BootstrapPair:
    pair_id: str
    text: str
    image: Image.Image


@dataclass
class FrozenFeatures:
    """Tower outputs before the projections: ``images`` (n*views, d_img), ``texts`` (n, d_txt)."""

    pair_ids: list[str]
    texts_raw: list[str]
    images: torch.Tensor
    texts: torch.Tensor
    views: int


@dataclass
class Calibration:
    threshold: float
    true_kept: float  # fraction of matched (image, own text) pairs at or above the threshold
    wrong_kept: float  # fraction of mismatched pairs at or above it
    positive_mean: float
    negative_mean: float
    recall_at_1: float  # image -> its own text among the held-out texts
    pairs: int
    held_out: bool
    kept_examples: list[dict[str, Any]] = field(default_factory=list)
    dropped_examples: list[dict[str, Any]] = field(default_factory=list)


def _lock_towers(model: torch.nn.Module) -> tuple[TimmModel, HFTextEncoder]:
    """Freeze everything but the two projections and the logit scale (whatever the config says)."""
    visual, text = getattr(model, "visual", None), getattr(model, "text", None)
    if not isinstance(visual, TimmModel) or not isinstance(text, HFTextEncoder):
        raise ValueError("bootstrap trains LiT-style models: a timm image tower and a Hugging Face text tower")
    trainable = (
        {"logit_scale"}
        | {f"visual.head.{n}" for n, _ in visual.head.named_parameters()}
        | {f"text.proj.{n}" for n, _ in text.proj.named_parameters()}
    )
    for name, p in model.named_parameters():
        p.requires_grad_(name in trainable)
    return visual, text


@torch.no_grad()
def extract_features(
    model, train_transform, eval_transform, tokenizer, pairs: Sequence[BootstrapPair], views: int = 1, batch: int = 32
) -> FrozenFeatures:
    """Run the frozen towers once over every pair (the only expensive step)."""
    visual, text = _lock_towers(model)
    model.eval()  # BatchNorm uses its ImageNet statistics; they are never updated
    images, texts = [], []
    for start in tqdm(range(0, len(pairs), batch), desc="frozen towers", unit="batch"):
        chunk = pairs[start : start + batch]
        per_view = []
        for v in range(views):
            tf = eval_transform if v == 0 else train_transform
            per_view.append(visual.trunk(torch.stack([tf(p.image.convert("RGB")) for p in chunk])))
        images.append(torch.stack(per_view, dim=1).flatten(0, 1))  # pair-major: views of a pair adjacent
        tokens = tokenizer([p.text for p in chunk])
        mask = (tokens != text.config.pad_token_id).long()
        texts.append(text.pooler(text.transformer(input_ids=tokens, attention_mask=mask), mask))
    return FrozenFeatures(
        [p.pair_id for p in pairs], [p.text for p in pairs], torch.cat(images).float(), torch.cat(texts).float(), views
    )


def _project(model, img: torch.Tensor, txt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return F.normalize(model.visual.head(img), dim=-1), F.normalize(model.text.proj(txt), dim=-1)


def train_projections(model, feats: FrozenFeatures, rows: Sequence[int], cfg: BootstrapConfig) -> list[float]:
    """CLIP InfoNCE on the projections of the cached features of pairs ``rows``; mean loss per epoch."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = max(1, -(-len(rows) // cfg.batch_size))
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=cfg.lr, total_steps=cfg.epochs * steps_per_epoch, pct_start=0.1
    )
    loss_fn = ClipLoss()
    rng = random.Random(cfg.seed)
    history = []
    for _ in tqdm(range(cfg.epochs), desc="projections", unit="epoch"):
        order = list(rows)
        rng.shuffle(order)
        total = 0.0
        for start in range(0, len(order), cfg.batch_size):
            idx = torch.tensor(order[start : start + cfg.batch_size])
            if len(idx) < 2:
                continue
            view = torch.tensor([rng.randrange(feats.views) for _ in idx])
            img, txt = _project(model, feats.images[idx * feats.views + view], feats.texts[idx])
            loss = loss_fn(img, txt, model.logit_scale.exp().clamp(max=100))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        history.append(total / max(1, len(order)))
    return history


@torch.inference_mode()
def calibrate(model, feats: FrozenFeatures, rows: Sequence[int], held_out: bool, examples: int = 5) -> Calibration:
    """Youden-optimal threshold between matched and mismatched image/text cosines of ``rows``."""
    idx = torch.tensor(list(rows))
    img, txt = _project(model, feats.images[idx * feats.views], feats.texts[idx])
    sim = (img @ txt.T).numpy()
    n = len(idx)
    pos = np.diag(sim)
    neg = sim[~np.eye(n, dtype=bool)]
    grid = np.unique(np.concatenate([pos, neg]))
    tpr = (pos[None, :] >= grid[:, None]).mean(1)
    fpr = (neg[None, :] >= grid[:, None]).mean(1) if len(neg) else np.zeros_like(tpr)
    best = int(np.argmax(tpr - fpr))
    thr = float(grid[best])
    kept, dropped = [], []
    masked = sim.copy()
    np.fill_diagonal(masked, -np.inf)
    for i in range(n):  # each image with its own text and with the most similar wrong text
        rows_to_show = [i] + ([int(masked[i].argmax())] if n > 1 else [])
        for j in rows_to_show:
            ex = {
                "pair_id": feats.pair_ids[idx[i]],
                "image_text": feats.texts_raw[idx[i]],
                "scored_text": feats.texts_raw[idx[j]],
                "own_text": i == j,
                "score": round(float(sim[i, j]), 4),
            }
            (kept if sim[i, j] >= thr else dropped).append(ex)
    by_score = lambda xs: sorted(xs, key=lambda e: -e["score"])[:examples]  # noqa: E731
    return Calibration(
        threshold=round(thr, 4),
        true_kept=float(tpr[best]),
        wrong_kept=float(fpr[best]),
        positive_mean=float(pos.mean()),
        negative_mean=float(neg.mean()) if len(neg) else 0.0,
        recall_at_1=float((sim.argmax(1) == np.arange(n)).mean()),
        pairs=n,
        held_out=held_out,
        kept_examples=by_score(kept),
        dropped_examples=by_score(dropped),
    )


def bootstrap(
    pairs: Sequence[BootstrapPair], cfg: BootstrapConfig, store: ObjectStore | None = None, out_uri: str | None = None
) -> tuple[dict[str, Any], Calibration]:
    """Train and calibrate; returns (checkpoint dict, calibration) and saves the checkpoint to ``out_uri``."""
    if len(pairs) < 4:
        raise ValueError(f"bootstrap needs at least 4 image-text pairs, got {len(pairs)}")
    torch.manual_seed(cfg.seed)
    model, train_tf, eval_tf = create_model_and_transforms(cfg.model, pretrained_towers=True, image_size=cfg.image_size)
    feats = extract_features(model, train_tf, eval_tf, get_tokenizer(cfg.model), pairs, views=cfg.views)
    val = [i for i, p in enumerate(pairs) if split_of(p.pair_id, cfg.val_percent) == "val"]
    held_out = len(val) >= cfg.min_val_pairs
    val_set = set(val) if held_out else set()
    train = [i for i in range(len(pairs)) if i not in val_set]
    history = train_projections(model, feats, train, cfg)
    calib = calibrate(model, feats, val if held_out else range(len(pairs)), held_out)
    digest = hashlib.sha1(
        json.dumps(asdict(cfg), sort_keys=True).encode() + "".join(feats.pair_ids).encode()
    ).hexdigest()[:8]
    ckpt = {
        "model_name": cfg.model,
        "image_size": cfg.image_size,
        "model": model.state_dict(),
        "step": cfg.epochs,
        "classes": [],
        "config": asdict(cfg),
        "version": f"lit-bootstrap-{digest}",
        "calibration": {k: v for k, v in asdict(calib).items() if not k.endswith("_examples")},
        "loss_history": history,
    }
    if out_uri:
        save_checkpoint(store or ObjectStore(S3Settings()), out_uri, ckpt)
    return ckpt, calib


def _load_pairs(settings, corpus: str | None, fixture: bool, max_pairs: int) -> list[BootstrapPair]:
    if fixture:
        from mofi_platform.databuild.fixtures import load_fixture_pairs

        raw = ((p.pair_id, p.text, p.image_bytes) for p in load_fixture_pairs())
    else:
        from mofi_platform.databuild.corpus import iter_corpus

        uri = corpus or f"s3://{settings.s3.corpus_bucket}/"
        raw = ((s.pair_id, s.text, s.image_bytes) for s in iter_corpus(ObjectStore(settings.s3), uri))
    if max_pairs:  # an even sample of every source: the pairs whose id hashes lowest (deterministic)
        raw = sorted(raw, key=lambda r: hashlib.sha1(r[0].encode()).hexdigest())[:max_pairs]
    out = []
    for pair_id, text, data in raw:
        try:
            image = decode_rgb(data, max_pixels=settings.data.max_pixels, min_side=512)
        except ImageRejected as e:  # a broken image in the corpus is skipped, not fatal, and said
            log.warning("skipping %s: %s", pair_id, e)
            continue
        out.append(BootstrapPair(pair_id, text, image))
    return out


@click.group()
def clip() -> None:
    """The CLIP scorer's model."""


@clip.command("bootstrap")
@click.option("--corpus", default=None, help="Corpus shard prefix (default s3://<corpus_bucket>/).")
@click.option("--fixture", is_flag=True, help="Train on the committed test fixture instead of the corpus.")
@click.option("--out", default=None, help="Checkpoint URI (default settings.scorer.checkpoint).")
@click.option("--model", default=BootstrapConfig.model, show_default=True, help="Registered model config.")
@click.option("--epochs", type=int, default=BootstrapConfig.epochs, show_default=True)
@click.option(
    "--views",
    type=int,
    default=BootstrapConfig.views,
    show_default=True,
    help="Image views per pair (1 = eval crop only; more adds augmented crops).",
)
@click.option("--image-size", type=int, default=BootstrapConfig.image_size, show_default=True)
@click.option("--max-pairs", type=int, default=0, help="Use this many pairs, an even sample across sources (0 = all).")
@click.option(
    "--report",
    "report_path",
    default=None,
    type=click.Path(dir_okay=False),
    help="Also write the calibration report as JSON here.",
)
@click.pass_obj
def bootstrap_cmd(settings, corpus, fixture, out, model, epochs, views, image_size, max_pairs, report_path) -> None:
    """Train the LiT-style CLIP scorer on raw corpus pairs; print the calibrated threshold."""
    logging.basicConfig(level=logging.INFO)
    cfg = BootstrapConfig(model=model, epochs=epochs, views=views, image_size=image_size, max_pairs=max_pairs)
    pairs = _load_pairs(settings, corpus, fixture, max_pairs)
    store = ObjectStore(settings.s3)
    out_uri = out or settings.scorer.checkpoint
    ckpt, calib = bootstrap(pairs, cfg, store, out_uri)
    report = {
        "checkpoint": out_uri,
        "version": ckpt["version"],
        "pairs": len(pairs),
        "final_loss": ckpt["loss_history"][-1],
        **asdict(calib),
    }
    if report_path:
        with open(report_path, "w") as fh:
            json.dump(report, fh, indent=1, ensure_ascii=False)
    click.echo(json.dumps(report, indent=1, ensure_ascii=False))
    click.echo(
        f"\nthreshold {calib.threshold}: keeps {calib.true_kept:.1%} of true texts and {calib.wrong_kept:.1%} "
        f"of wrong ones ({'held-out' if calib.held_out else 'all'} {calib.pairs} pairs). "
        f"Use it with MOFI_SCORER_THRESHOLD={calib.threshold}"
    )
