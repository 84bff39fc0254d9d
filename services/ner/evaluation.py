"""Scoring the extractor against a labelled set (``tests/ner/evalset.jsonl``).

Rows are ``{"text", "gold": [{"mention", "start", "end", "ids": [acceptable entity ids]}]}``; several
ids are acceptable where WordNet splits one visual concept into near-identical senses (the fruit and
the plant of "cherry"). Metrics:
- mention recall: gold mentions overlapped by a found mention;
- link precision: emitted candidates whose entity is acceptable for some gold mention of the text;
- link recall: gold mentions with an acceptable entity among the emitted candidates.

:class:`CrossValidation` reports them on texts the linker's calibration was not fitted on: candidates
are extracted once with neutral weights, and each fold is rescored with weights fitted on the others.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from mofi.kb import KnowledgeBase
from mofi.settings import NerSettings
from mofi_platform.services.ner.extractor import Extraction, Extractor
from mofi_platform.services.ner.linking import FEATURES, Calibration, choose

__all__ = [
    "EvalRow",
    "Metrics",
    "load_evalset",
    "score",
    "candidate_labels",
    "rescore",
    "fit_calibration",
    "CrossValidation",
]


@dataclass(frozen=True)
class EvalRow:
    text: str
    gold: tuple[dict, ...]


@dataclass(frozen=True)
class Metrics:
    texts: int
    gold_mentions: int
    mention_recall: float
    link_precision: float
    link_recall: float
    candidates: int

    def to_dict(self) -> dict:
        return asdict(self)


def load_evalset(path: str | Path) -> list[EvalRow]:
    return [EvalRow(r["text"], tuple(r["gold"])) for r in map(json.loads, Path(path).read_text().splitlines())]


def _overlaps(a_start: int, a_end: int, b_start: int, b_end: int) -> bool:
    return a_start < b_end and b_start < a_end


def candidate_labels(row: EvalRow, extraction: Extraction) -> list[bool]:
    """For each candidate: is its entity acceptable for a gold mention its own mention overlaps?"""
    out = []
    for c in extraction.candidates:
        m = extraction.mentions[c.mention_index]
        out.append(any(c.entity.id in g["ids"] and _overlaps(m.start, m.end, g["start"], g["end"]) for g in row.gold))
    return out


def score(rows: Sequence[EvalRow], extractions: Sequence[Extraction]) -> Metrics:
    gold = found = linked = correct = emitted = 0
    for row, ex in zip(rows, extractions):
        gold += len(row.gold)
        labels = candidate_labels(row, ex)
        emitted += len(labels)
        correct += sum(labels)
        for g in row.gold:
            found += any(_overlaps(m.start, m.end, g["start"], g["end"]) for m in ex.mentions)
            linked += any(
                c.entity.id in g["ids"]
                and _overlaps(
                    ex.mentions[c.mention_index].start, ex.mentions[c.mention_index].end, g["start"], g["end"]
                )
                for c in ex.candidates
            )
    return Metrics(len(rows), gold, found / max(gold, 1), correct / max(emitted, 1), linked / max(gold, 1), emitted)


def rescore(extraction: Extraction, calibration: Calibration, threshold: float, max_candidates: int) -> Extraction:
    """The extraction as another calibration/threshold would have linked it (from stored features):
    extract once with threshold 0 and unlimited candidates, then try weights and thresholds cheaply."""
    feats = np.array([c.features for c in extraction.candidates], dtype=np.float64).reshape(-1, len(FEATURES))
    scores = calibration.score(feats)
    scored = [(c.mention_index, c.entity, list(c.features), float(s)) for c, s in zip(extraction.candidates, scores)]
    mentions = list(extraction.mentions)
    return Extraction(extraction.text, extraction.mentions, tuple(choose(mentions, scored, threshold, max_candidates)))


def fit_calibration(features: np.ndarray, labels: np.ndarray) -> Calibration:
    """Logistic-regression weights of the linking features for right (1) / wrong (0) candidates."""
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=1.0, max_iter=1000).fit(features, labels)
    return Calibration(tuple(float(w) for w in model.coef_[0]), float(model.intercept_[0]))


class CrossValidation:
    """Every candidate of every text extracted once (neutral weights, no threshold, no cap), labelled
    against the gold entities; fold ``k`` holds texts ``i`` with ``i % folds == k``."""

    def __init__(self, cfg: NerSettings, kb: KnowledgeBase, rows: Sequence[EvalRow], folds: int = 5):
        everything = copy.copy(cfg)
        everything.link_threshold, everything.max_candidates = 0.0, 1000
        extractor = Extractor(everything, kb, calibration=Calibration((0.0,) * len(FEATURES), 0.0))
        self.spacy_pipeline = extractor.spacy_pipeline
        self.rows = list(rows)
        self.raw = extractor.extract([r.text for r in self.rows])
        self.features = [
            np.array([c.features for c in e.candidates], dtype=np.float64).reshape(-1, len(FEATURES)) for e in self.raw
        ]
        self.labels = [np.array(candidate_labels(r, e), dtype=int) for r, e in zip(self.rows, self.raw)]
        self.fold = np.arange(len(self.rows)) % folds
        self.calibrations = [self._fit([i for i in range(len(self.rows)) if self.fold[i] != k]) for k in range(folds)]

    def _fit(self, texts: Sequence[int]) -> Calibration:
        return fit_calibration(
            np.concatenate([self.features[i] for i in texts]), np.concatenate([self.labels[i] for i in texts])
        )

    def final(self) -> Calibration:
        """Weights fitted on every text (what gets shipped; its quality is :meth:`metrics`)."""
        return self._fit(range(len(self.rows)))

    def extractions(self, threshold: float, max_candidates: int) -> list[Extraction]:
        """Each text linked with the weights fitted on the other folds."""
        return [rescore(e, self.calibrations[self.fold[i]], threshold, max_candidates) for i, e in enumerate(self.raw)]

    def metrics(self, threshold: float, max_candidates: int) -> Metrics:
        return score(self.rows, self.extractions(threshold, max_candidates))
