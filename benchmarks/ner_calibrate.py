"""Fit the linker's calibration on the labelled set and report NER/linking quality (rerunnable).

Every candidate of every mention is labelled right/wrong against the judged gold entities, a
logistic regression over the linking features is fitted, and quality is reported by 5-fold
cross-validation over texts (each fold scored with weights fitted on the other four), so the
reported numbers are not measured on the data the weights were fitted on. The final weights
(fitted on all texts) are written to services/ner/calibration.json.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/ner_calibrate.py [--write]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402

from mofi.kb import KnowledgeBase  # noqa: E402
from mofi.settings import NerSettings  # noqa: E402
from mofi_platform.services.ner.evaluation import candidate_labels, load_evalset, rescore, score  # noqa: E402
from mofi_platform.services.ner.extractor import Extractor  # noqa: E402
from mofi_platform.services.ner.linking import CALIBRATION_PATH, FEATURES, Calibration  # noqa: E402

EVALSET = ROOT / "tests/ner/evalset.jsonl"
KB = ROOT / "tests/ner/kb.jsonl"


def fit(x: np.ndarray, y: np.ndarray) -> Calibration:
    model = LogisticRegression(C=1.0, class_weight=None, max_iter=1000).fit(x, y)
    return Calibration(tuple(float(w) for w in model.coef_[0]), float(model.intercept_[0]))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--write", action="store_true", help="write the weights fitted on all texts")
    ap.add_argument("--folds", type=int, default=5)
    args = ap.parse_args()
    cfg = NerSettings(kb_path=str(KB))
    rows = load_evalset(EVALSET)
    everything = copy.copy(cfg)
    everything.link_threshold, everything.max_candidates = 0.0, 1000
    ex = Extractor(everything, KnowledgeBase.load(KB), calibration=Calibration((0.0,) * len(FEATURES), 0.0))
    raw = ex.extract([r.text for r in rows])
    feats = [np.array([c.features for c in e.candidates]).reshape(-1, len(FEATURES)) for e in raw]
    labels = [np.array(candidate_labels(r, e), dtype=int) for r, e in zip(rows, raw)]

    folds = np.arange(len(rows)) % args.folds
    cals = {}
    for k in range(args.folds):
        train = [i for i in range(len(rows)) if folds[i] != k]
        cals[k] = fit(np.concatenate([feats[i] for i in train]), np.concatenate([labels[i] for i in train]))

    def cross_validated(threshold: float):
        return score(rows, [rescore(e, cals[folds[i]], threshold, cfg.max_candidates) for i, e in enumerate(raw)])

    curve = {t: cross_validated(t) for t in (0.05, 0.1, 0.2, 0.35, 0.5)}
    for t, m in curve.items():
        print(
            f"threshold {t:.2f}: mention recall {m.mention_recall:.3f}  link precision {m.link_precision:.3f}  "
            f"link recall {m.link_recall:.3f}  candidates {m.candidates}"
        )
    cv_extractions = [rescore(e, cals[folds[i]], cfg.link_threshold, cfg.max_candidates) for i, e in enumerate(raw)]
    metrics = score(rows, cv_extractions)
    final = fit(np.concatenate(feats), np.concatenate(labels))
    result = {
        "evalset": str(EVALSET.relative_to(ROOT)),
        "spacy_model": ex.spacy_pipeline,
        "threshold": cfg.link_threshold,
        "max_candidates": cfg.max_candidates,
        "cv_folds": args.folds,
        **metrics.to_dict(),
        "weights": dict(zip(FEATURES, final.weights)),
        "bias": final.bias,
    }
    print(json.dumps(result, indent=2))
    if args.write:
        final.save(
            CALIBRATION_PATH,
            fitted_on=f"{EVALSET.relative_to(ROOT)} ({len(rows)} texts, {int(sum(len(x) for x in labels))} candidates)",
        )
        print(f"wrote {CALIBRATION_PATH}")


if __name__ == "__main__":
    main()
