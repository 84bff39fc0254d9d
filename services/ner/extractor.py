"""The NER core: validate alt-texts, blank their credits and URLs (:mod:`.cleaning`), find mentions, link
them. One loaded instance serves both the gRPC service and the Kafka stage; calls are serialised (spaCy
and torch are not shared across threads here), and a batch of texts goes through spaCy's ``pipe`` and
one MiniLM pass. Mentions are found in the cleaned text, whose offsets are the original's.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mofi.kb import KnowledgeBase
from mofi.settings import NerSettings, Settings
from mofi_platform.services.common.entity_vectors import EntityVectors, kb_path, vectors_path
from mofi_platform.services.common.texts import validate_text
from mofi_platform.services.ner.cleaning import clean_text
from mofi_platform.services.ner.encoder import TextEncoder
from mofi_platform.services.ner.linking import Calibration, Candidate, Linker
from mofi_platform.services.ner.mentions import Mention, MentionFinder, load_spacy

__all__ = ["Extraction", "Extractor"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Extraction:
    text: str
    mentions: tuple[Mention, ...]
    candidates: tuple[Candidate, ...]


class Extractor:
    """``extract(texts) -> list[Extraction]`` for already validated texts."""

    def __init__(
        self,
        cfg: NerSettings,
        kb: KnowledgeBase,
        nlp=None,
        encoder: TextEncoder | None = None,
        calibration: Calibration | None = None,
    ):
        self.cfg = cfg
        self.kb = kb
        self.nlp = nlp or load_spacy(cfg.spacy_model)
        self.finder = MentionFinder(self.nlp, kb)
        self.encoder = encoder or TextEncoder(cfg.text_encoder)
        self.linker = Linker(
            kb, self.encoder, calibration or Calibration.load(), cfg.link_threshold, cfg.max_candidates
        )
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> Extractor:
        path = kb_path(settings)
        log.info("loading knowledge base %s", path)
        extractor = cls(settings.ner, KnowledgeBase.load(path))
        extractor.load_vectors(path)
        log.info("spaCy pipeline %s", extractor.spacy_pipeline)
        return extractor

    def load_vectors(self, kb_file: str | Path) -> bool:
        """Use the entity-vector table beside the knowledge base, if one was built for this encoder."""
        table_path = vectors_path(kb_file, self.encoder.tag)
        self.encoder.table = EntityVectors.load(table_path)
        if self.encoder.table is None:
            log.warning(
                "no entity-vector table at %s: entity texts are encoded on demand, several times slower "
                "(build it once with `mofi ner vectors`)",
                table_path,
            )
            return False
        log.info("entity vectors: %d texts from %s", len(self.encoder.table), table_path)
        return True

    @property
    def spacy_pipeline(self) -> str:
        """Which spaCy pipeline runs, as "lang_name-version" (``ner.spacy_model`` may leave it to what is installed)."""
        meta = self.nlp.meta
        return f"{meta['lang']}_{meta['name']}-{meta['version']}"

    def validate(self, text: str) -> str:
        return validate_text(text, self.cfg.max_text_chars)

    def extract(self, texts: Sequence[str]) -> list[Extraction]:
        cleaned = [clean_text(t) for t in texts]  # credits and URLs blanked; offsets unchanged
        with self._lock:
            docs = list(self.nlp.pipe(cleaned, batch_size=64))
            mentions = [self.finder.find(doc) for doc in docs]
            need = [i for i, m in enumerate(mentions) if any(x.aliases for x in m)]
            contexts = dict(zip(need, self.encoder.encode([cleaned[i] for i in need])))
            return [
                Extraction(text, tuple(m), tuple(self.linker.link(m, contexts[i])) if i in contexts else ())
                for i, (text, m) in enumerate(zip(texts, mentions))
            ]
