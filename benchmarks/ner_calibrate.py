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
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mofi.kb import KnowledgeBase  # noqa: E402
from mofi.settings import NerSettings  # noqa: E402
from mofi_platform.services.ner.evaluation import CrossValidation, load_evalset  # noqa: E402
from mofi_platform.services.ner.linking import CALIBRATION_PATH, FEATURES  # noqa: E402

EVALSET = ROOT / "tests/ner/evalset.jsonl"
KB = ROOT / "tests/ner/kb.jsonl"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--write", action="store_true", help="write the weights fitted on all texts")
    ap.add_argument("--folds", type=int, default=5)
    args = ap.parse_args()
    cfg = NerSettings(kb_path=str(KB))
    rows = load_evalset(EVALSET)
    cv = CrossValidation(cfg, KnowledgeBase.load(KB), rows, args.folds)
    for t in (0.05, 0.1, 0.2, 0.35, 0.5):
        m = cv.metrics(t, cfg.max_candidates)
        print(
            f"threshold {t:.2f}: mention recall {m.mention_recall:.3f}  link precision {m.link_precision:.3f}  "
            f"link recall {m.link_recall:.3f}  candidates {m.candidates}"
        )
    metrics = cv.metrics(cfg.link_threshold, cfg.max_candidates)
    final = cv.final()
    result = {
        "evalset": str(EVALSET.relative_to(ROOT)),
        "spacy_model": cv.spacy_pipeline,
        "threshold": cfg.link_threshold,
        "max_candidates": cfg.max_candidates,
        "cv_folds": args.folds,
        **metrics.to_dict(),
        "weights": dict(zip(FEATURES, final.weights)),
        "bias": final.bias,
    }
    print(json.dumps(result, indent=2))
    if args.write:
        candidates = int(sum(len(x) for x in cv.labels))
        fitted_on = f"{EVALSET.relative_to(ROOT)} ({len(rows)} texts, {candidates} candidates)"
        final.save(CALIBRATION_PATH, fitted_on=fitted_on)
        print(f"wrote {CALIBRATION_PATH}")


if __name__ == "__main__":
    main()
