"""`mofi kb import` on a committed excerpt in the exact Wikidata JSON dump layout (tests/fixtures/wikidata):
items kept and skipped, aliases, types, priors, compressed dumps, merging with the built-in KB through
identifier same-as links, user JSONL, and the version id."""

from __future__ import annotations

import bz2
import gzip
import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from mofi.cli import main
from mofi.kb import Entity, KnowledgeBase
from mofi_platform.databuild.fixtures import fixture_dir, fixture_kb_path
from mofi_platform.databuild.kb_import import import_kb, wikidata_prior

DUMP = fixture_dir() / "wikidata" / "latest-all-excerpt.json"


def test_dump_excerpt_is_in_the_dump_layout():
    lines = DUMP.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "[" and lines[-1] == "]"
    assert all(line.endswith("},") for line in lines[1:-2]) and lines[-2].endswith("}")
    assert len(json.loads(DUMP.read_text(encoding="utf-8"))) == len(lines) - 2  # one JSON array


@pytest.mark.parametrize("compress", [None, gzip, bz2])
def test_wikidata_items_with_english_label_and_description_are_kept(tmp_path, compress):
    dump = DUMP
    if compress is not None:
        dump = tmp_path / f"latest-all.json.{'gz' if compress is gzip else 'bz2'}"
        dump.write_bytes(compress.compress(DUMP.read_bytes()))
    out = tmp_path / "kb.jsonl"
    report = import_kb(out, wikidata=[dump])
    kb = KnowledgeBase.load(out)
    assert sorted(e.id for e in kb) == ["wd:Q142", "wd:Q146", "wd:Q42", "wd:Q5", "wd:Q90"]
    assert report.skipped == {"not_an_item": 1, "no_english_description": 1, "no_english_label": 1}
    assert report.read[str(dump)] == 8 and report.version == kb.version
    paris = kb.get("wd:Q90")
    assert paris == Entity(
        "wd:Q90",
        "Paris",
        ("City of Light", "Paris, France"),
        "capital city of France",
        "Q515 Q1549591",  # instance-of values; the deprecated Q5119 statement is left out
        "wikidata",
        wikidata_prior(4),
    )
    adams = kb.get("wd:Q42")
    assert adams.aliases == ("Douglas Noël Adams", "Douglas Noel Adams")  # English only, the label not repeated
    assert kb.get("wd:Q146").type == "Q39201 Q20980"  # subclass-of where there is no instance-of
    assert [e.id for e in kb.lookup("cat")] == ["wd:Q146"]
    assert wikidata_prior(5) > wikidata_prior(3) > 0 and wikidata_prior(10_000) == 1.0


def test_import_merges_the_builtin_kb_and_user_jsonl(settings, tmp_path):
    settings.data.build_dir = str(tmp_path / "data")
    builtin = Path(settings.data.build_dir) / "kb" / "kb.jsonl"
    builtin.parent.mkdir(parents=True)
    shutil.copy(fixture_kb_path(), builtin)
    user = tmp_path / "mine.jsonl"
    user.write_text(
        json.dumps({"id": "my:1", "name": "Zorblax", "aliases": ["the zorb"], "description": "our mascot"})
        + "\n\n"
        + json.dumps({"id": "geo:2988507", "name": "Paris", "description": "a second Paris"})
        + "\n"
    )
    out = tmp_path / "merged.jsonl"
    args = ["kb", "import", "--wikidata", str(DUMP), "--jsonl", str(user), "--merge-builtin", "--out", str(out)]
    res = CliRunner().invoke(main, args, env=settings.to_env())
    assert res.exit_code == 0, res.output
    kb = KnowledgeBase.load(out)
    report = json.loads(res.stdout[: res.stdout.rindex("}") + 1])  # stdout: the progress bars go to stderr
    builtin_count = len(KnowledgeBase.load(builtin))
    assert len(kb) == builtin_count + 1 + 5
    assert report["skipped"]["duplicate_id"] == 1 and report["same_as"] == 2 and report["version"] == kb.version
    assert f"version {kb.version}" in res.output
    # items that carry a built-in entity's identifier fold into it: one concept, one class
    assert kb.get("wd:Q90").same_as == "geo:2988507" and kb.canonical("wd:Q90") == "geo:2988507"
    assert kb.get("wd:Q142").same_as == "country:FR"
    city_of_light = [e.id for e in kb.lookup("City of Light")]  # WordNet's Paris has the name too
    assert "geo:2988507" in city_of_light and "wd:Q90" not in city_of_light  # the item's name finds the city
    assert kb.get("geo:2988507").description != "a second Paris"  # the built-in entity wins its id
    assert [e.id for e in kb.lookup("Douglas Adams")] == ["wd:Q42"]
    assert [e.id for e in kb.lookup("the zorb")] == ["my:1"]


def test_a_malformed_user_line_is_an_error_naming_it(settings, tmp_path):
    user = tmp_path / "mine.jsonl"
    user.write_text('{"id": "my:1", "name": "ok"}\n{"id": "my:2"}\n')
    out = tmp_path / "kb.jsonl"
    res = CliRunner().invoke(main, ["kb", "import", "--jsonl", str(user), "--out", str(out)], env=settings.to_env())
    assert res.exit_code != 0 and f"{user}:2: not an entity record" in res.output
    assert not out.exists()  # nothing half-written
    res = CliRunner().invoke(main, ["kb", "import", "--merge-builtin", "--jsonl", str(user)], env=settings.to_env())
    assert res.exit_code != 0 and "no built-in knowledge base" in res.output


def test_limit_stops_after_that_many_items(tmp_path):
    report = import_kb(tmp_path / "kb.jsonl", wikidata=[DUMP], limit=2)
    assert report.entities == 2 and report.kept == {"wikidata": 2}
