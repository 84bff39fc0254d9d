"""One extractor per test session over the committed evaluation knowledge base (tests/ner/kb.jsonl)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mofi.kb import KnowledgeBase
from mofi.settings import NerSettings
from mofi_platform.services.ner.extractor import Extractor

HERE = Path(__file__).resolve().parent
KB_PATH = HERE / "kb.jsonl"
EVALSET = HERE / "evalset.jsonl"


@pytest.fixture(scope="session")
def ner_cfg() -> NerSettings:
    return NerSettings(kb_path=str(KB_PATH), max_text_chars=300)


@pytest.fixture(scope="session")
def extractor(ner_cfg) -> Extractor:
    return Extractor(ner_cfg, KnowledgeBase.load(KB_PATH))
