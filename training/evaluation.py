"""Evaluating image embeddings: GPR1200-protocol retrieval mAP, zero-shot and linear-probe accuracy.

Benchmark layout (GPR1200's): a folder of ``{class}_{name}.{png|jpg|webp}``; the class is the text
before the first underscore. Optional ``domains.json`` maps class -> domain (for per-domain mAP;
without it every image is in domain "all") and optional ``classes.json`` maps class -> display
name (or ``{"name", "description", "entity"}``) for zero-shot prompts (without it the class string is
used); ``entity`` is the class's knowledge-base id, which tells seen from unseen classes
(:mod:`.references`).

Retrieval protocol, as GPR1200 defines it: every image queries the whole set, itself included;
embeddings are L2-normalised and ranked by cosine; the score is full (not truncated) mean average
precision. Per-domain mAP averages the APs of that domain's queries, still searched against the
whole set.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from sklearn.linear_model import LogisticRegression
from tqdm import tqdm

__all__ = [
    "BenchmarkImage",
    "Benchmark",
    "load_benchmark",
    "average_precisions",
    "retrieval_map",
    "zero_shot_accuracy",
    "linear_probe_accuracy",
    "ZERO_SHOT_TEMPLATES",
    "split_map",
    "evaluate_embeddings",
    "embed_benchmark",
    "evaluate_model",
]

_NAME = re.compile(r"^(?P<cls>[^_]+)_(?P<rest>.+)\.(png|jpg|jpeg|webp)$", re.IGNORECASE)

#: Prompt ensemble for zero-shot: MOFI's entity text alone and a CLIP-style sentence.
ZERO_SHOT_TEMPLATES = ("{name}", "a photo of {name}.")


@dataclass(frozen=True)
class BenchmarkImage:
    path: Path
    label: str
    domain: str


@dataclass(frozen=True)
class Benchmark:
    root: Path
    images: list[BenchmarkImage]
    class_text: dict[str, str]  # class -> text used in zero-shot prompts
    class_names: dict[str, str] = field(default_factory=dict)  # class -> display name (the class string if none)
    class_entity: dict[str, str] = field(default_factory=dict)  # class -> KB entity id, where classes.json gives one

    @cached_property
    def digest(self) -> str:
        """What the benchmark is, by content: a hash of its file names and bytes (images and JSON files)."""
        h = hashlib.sha256()
        for path in sorted([im.path for im in self.images] + list(self.root.glob("*.json"))):
            h.update(path.name.encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
        return h.hexdigest()[:24]

    @property
    def labels(self) -> np.ndarray:
        return np.array([im.label for im in self.images])

    @property
    def domains(self) -> np.ndarray:
        return np.array([im.domain for im in self.images])


def load_benchmark(root: str | Path) -> Benchmark:
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"benchmark folder {root} does not exist")
    domains: dict[str, str] = {}
    if (root / "domains.json").exists():
        domains = json.loads((root / "domains.json").read_text())
    class_text: dict[str, str] = {}
    class_names: dict[str, str] = {}
    class_entity: dict[str, str] = {}
    if (root / "classes.json").exists():
        for cls, value in json.loads((root / "classes.json").read_text()).items():
            if isinstance(value, dict):
                desc = value.get("description", "")
                class_text[cls] = f"{value['name']}: {desc}" if desc else value["name"]
                class_names[cls] = value["name"]
                if value.get("entity"):
                    class_entity[cls] = str(value["entity"])
            else:
                class_text[cls] = class_names[cls] = str(value)
    images = []
    for path in sorted(root.iterdir()):
        match = _NAME.match(path.name)
        if match and path.is_file():
            label = match.group("cls")
            images.append(BenchmarkImage(path, label, domains.get(label, "all")))
    if not images:
        raise ValueError(f"no {{class}}_{{name}}.png|jpg images in {root}")
    for im in images:
        class_text.setdefault(im.label, im.label)
        class_names.setdefault(im.label, im.label)
    labels = {im.label for im in images}
    return Benchmark(
        root,
        images,
        class_text,
        {c: n for c, n in class_names.items() if c in labels},
        {c: e for c, e in class_entity.items() if c in labels},
    )


def average_precisions(embeddings: np.ndarray, labels: Sequence[str]) -> np.ndarray:
    """Full AP of every image as a query against all images (itself included), cosine ranking."""
    x = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True).clip(min=1e-12)
    labels = np.asarray(labels)
    sims = x @ x.T
    order = np.argsort(-sims, axis=1, kind="stable")
    relevant = labels[order] == labels[:, None]
    hits = np.cumsum(relevant, axis=1)
    ranks = np.arange(1, len(labels) + 1)
    precision_at_hits = np.where(relevant, hits / ranks, 0.0)
    return precision_at_hits.sum(axis=1) / relevant.sum(axis=1)


def retrieval_map(embeddings: np.ndarray, labels: Sequence[str], domains: Sequence[str]) -> dict[str, Any]:
    return _maps(average_precisions(embeddings, labels), domains)


def _maps(aps: np.ndarray, domains: Sequence[str]) -> dict[str, Any]:
    domains = np.asarray(domains)
    return {
        "map": float(aps.mean()),
        "map_per_domain": {d: float(aps[domains == d].mean()) for d in sorted(set(domains.tolist()))},
    }


def split_map(aps: np.ndarray, labels: Sequence[str], seen: Mapping[str, bool]) -> dict[str, Any]:
    """mAP over the queries of seen and of unseen classes (None for a side without classes), and the classes."""
    labels = np.asarray(labels)
    is_seen = np.array([seen.get(label, False) for label in labels.tolist()], dtype=bool)
    out: dict[str, Any] = {}
    for side, mask in (("seen", is_seen), ("unseen", ~is_seen)):
        out[f"map_{side}"] = float(aps[mask].mean()) if mask.any() else None
        out[f"{side}_classes"] = sorted(set(labels[mask].tolist()))
    return out


def zero_shot_accuracy(image_emb: np.ndarray, labels: Sequence[str], class_emb: dict[str, np.ndarray]) -> float:
    """Top-1 accuracy of assigning each image the class whose prompt embedding is most similar."""
    classes = sorted(class_emb)
    weights = np.stack([class_emb[c] for c in classes])
    weights /= np.linalg.norm(weights, axis=1, keepdims=True)
    predicted = np.asarray(classes)[np.argmax(image_emb @ weights.T, axis=1)]
    return float(np.mean(predicted == np.asarray(labels)))


def linear_probe_accuracy(embeddings: np.ndarray, labels: Sequence[str], seed: int = 0) -> float:
    """Logistic regression on frozen embeddings: the odd images of each class train, the even test.

    Alternating within each class (images sorted by file name) keeps every class on both sides,
    which a random split of a 4-images-per-class benchmark would not.
    """
    labels = np.asarray(labels)
    train_idx, test_idx = [], []
    for cls in sorted(set(labels.tolist())):
        idx = np.flatnonzero(labels == cls)
        train_idx += idx[1::2].tolist()
        test_idx += idx[0::2].tolist()
    clf = LogisticRegression(max_iter=2000, C=10.0, random_state=seed)
    clf.fit(embeddings[train_idx], labels[train_idx])
    return float(np.mean(clf.predict(embeddings[test_idx]) == labels[test_idx]))


def embed_benchmark(
    bench: Benchmark, embed_images: Callable[[list[Image.Image]], np.ndarray], batch: int = 32
) -> np.ndarray:
    out = []
    for start in tqdm(range(0, len(bench.images), batch), desc=f"embed {bench.root.name}", unit="batch"):
        chunk = []
        for im in bench.images[start : start + batch]:
            with Image.open(im.path) as raw:
                chunk.append(raw.convert("RGB"))
        out.append(embed_images(chunk))
    return np.concatenate(out)


def evaluate_embeddings(
    bench: Benchmark,
    image_emb: np.ndarray,
    embed_texts: Callable[[list[str]], np.ndarray] | None = None,
    seen: Mapping[str, bool] | None = None,
) -> dict[str, Any]:
    """Retrieval mAP (overall, per domain, and over seen/unseen classes when ``seen`` says which are),
    linear probe, and zero-shot when a text tower is given."""
    aps = average_precisions(image_emb, bench.labels)
    results: dict[str, Any] = {
        "benchmark": str(bench.root),
        "num_images": len(bench.images),
        "num_classes": len(set(bench.labels.tolist())),
        **_maps(aps, bench.domains),
        **(split_map(aps, bench.labels, seen) if seen is not None else {}),
        "linear_probe_top1": linear_probe_accuracy(image_emb, bench.labels),
        "zero_shot_top1": None,
    }
    if embed_texts is not None:
        class_emb = {}
        for cls, text in bench.class_text.items():
            prompts = embed_texts([t.format(name=text) for t in ZERO_SHOT_TEMPLATES])
            class_emb[cls] = prompts.mean(axis=0)
        results["zero_shot_top1"] = zero_shot_accuracy(image_emb, bench.labels, class_emb)
    return results


def evaluate_model(bench: Benchmark, model: Any, seen: Mapping[str, bool] | None = None) -> dict[str, Any]:
    """Every metric for a loaded :class:`~mofi_platform.training.inference.EmbeddingModel`, with its name,
    version and input size (``seen``: as for :func:`evaluate_embeddings`).

    One function for ``mofi eval`` and the pipeline's evaluate step (through
    :func:`~mofi_platform.training.references.evaluate_with_references`), so both report the same numbers.
    """
    emb = embed_benchmark(bench, model.embed_images)
    return {
        "model": model.model_name,
        "version": model.version,
        "image_size": model.image_size,
        **evaluate_embeddings(bench, emb, model.embed_texts, seen=seen),
    }
