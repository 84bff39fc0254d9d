import hashlib
import json
import tempfile
import time
from pathlib import Path

import pytest

from mofi.kb import Entity, KnowledgeBase, index_paths, normalize_alias, write_kb
from mofi_platform.databuild.fixtures import fixture_kb_path


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("  The Eiffel-Tower. ", "the eiffel-tower"),
        ("Mont-Saint-Michel", "mont-saint-michel"),
        ('"Sumatran   tiger"', "sumatran tiger"),
        ("ＴＩＧＥＲ", "tiger"),  # NFKC folds full-width letters
        ("...", ""),
    ],
)
def test_normalize_alias(raw, expected):
    assert normalize_alias(raw) == expected


def test_fixture_kb_has_the_entities_other_areas_rely_on():
    kb = KnowledgeBase.load(fixture_kb_path())
    assert 100 <= len(kb) <= 1000
    assert kb.lookup("Sumatran tiger")[0].id == "tuxpaint:animals/mammals/cats/tiger_sumatran"
    tiger = kb.get("wn:02129604")
    assert tiger is not None and "feline" in tiger.description and "Panthera tigris" in tiger.aliases
    assert kb.lookup("tiger")[0].id == "wn:02129604"  # the most common sense ranks first
    assert kb.lookup("  mont-saint-michel ")[0].type == "monument"
    assert {e.id for e in kb.lookup("Normandy")} >= {"gcompris:geo-country/france/normandy"}
    assert kb.lookup("eiffel tower.")[0].id == "wn:03266906"
    assert kb.lookup("no such thing at all") == []


def test_ids_are_namespaced_and_every_alias_is_normalised():
    kb = KnowledgeBase.load(fixture_kb_path())
    assert all(":" in e.id for e in kb)
    assert all(a == normalize_alias(a) for a in kb.aliases())


def test_load_tens_of_thousands_well_under_a_second(tmp_path):
    entities = [
        Entity(
            f"t:{i}",
            f"thing {i}",
            (f"alias {i}", f"other name {i % 997}"),
            "a test thing",
            "thing",
            "test",
            prior=(i % 10) / 10,
        )
        for i in range(20_000)
    ]
    path = tmp_path / "kb.jsonl"
    assert write_kb(entities, path) == 20_000
    started = time.process_time()  # CPU time: the machine's other load must not decide the test
    kb = KnowledgeBase.load(path)
    assert time.process_time() - started < 1.0
    assert len(kb) == 20_000
    shared = kb.lookup("Other Name 5")
    assert len(shared) == len(range(5, 20_000, 997))
    assert [e.prior for e in shared] == sorted((e.prior for e in shared), reverse=True)


def test_malformed_and_duplicate_records_are_errors(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"id": "a:1", "name": "one"}) + "\n{not json\n")
    with pytest.raises(ValueError, match=r"bad.jsonl:2"):
        KnowledgeBase.load(bad)
    dup = tmp_path / "dup.jsonl"
    dup.write_text("".join(json.dumps({"id": "a:1", "name": n}) + "\n" for n in ("one", "uno")))
    with pytest.raises(ValueError, match="duplicate entity id"):
        KnowledgeBase.load(dup)


def _things(n: int, tag: str = "a test thing") -> list[Entity]:
    return [
        Entity(
            f"t:{i}", f"thing {i}", (f"alias {i}", f"other name {i % 997}"), tag, "thing", "test", prior=(i % 10) / 10
        )
        for i in range(n)
    ]


def test_index_file_is_written_reused_and_invalidated_by_content(tmp_path, monkeypatch):
    path = tmp_path / "kb.jsonl"
    write_kb(_things(3000), path)
    first = KnowledgeBase.load(path, index_file=True)
    idx = index_paths(path, hashlib.sha256(path.read_bytes()).hexdigest())[0]
    assert idx == tmp_path / "kb.jsonl.idx" and idx.exists()

    def no_parsing(*_):
        raise AssertionError("the index file should have been used")

    with monkeypatch.context() as m:
        m.setattr(KnowledgeBase, "_parse", classmethod(no_parsing))
        again = KnowledgeBase.load(path, index_file=True)
    assert list(again.aliases()) == list(first.aliases()) and len(again) == 3000
    assert again.lookup("Other Name 5") == first.lookup("other name 5")
    assert again.get("t:42") == Entity(
        "t:42", "thing 42", ("alias 42", "other name 42"), "a test thing", "thing", "test", 0.2
    )
    assert "t:2999" in again and "t:3000" not in again and list(again) == list(first)

    write_kb(_things(3000, tag="edited"), path)  # same size, same aliases, new content: the old index is stale
    assert KnowledgeBase.load(path, index_file=True).get("t:1").description == "edited"
    idx.write_bytes(b"not an index")  # unreadable: ignored and rewritten
    assert KnowledgeBase.load(path, index_file=True).get("t:1").description == "edited"
    assert idx.read_bytes() != b"not an index"
    small = tmp_path / "small.jsonl"
    write_kb(_things(10), small)
    KnowledgeBase.load(small)  # below INDEX_MIN_BYTES: no index file
    assert not (tmp_path / "small.jsonl.idx").exists()


def test_index_goes_to_the_temp_folder_when_the_kb_folder_is_read_only(tmp_path, monkeypatch):
    path = tmp_path / "kb.jsonl"
    write_kb(_things(500), path)
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    beside, fallback = index_paths(path, sha)
    real_mkstemp = tempfile.mkstemp

    def read_only_kb_folder(*args, dir=None, **kw):
        if Path(dir) == tmp_path:
            raise PermissionError(13, "Read-only file system", str(dir))
        return real_mkstemp(*args, dir=dir, **kw)

    monkeypatch.setattr(tempfile, "mkstemp", read_only_kb_folder)
    kb = KnowledgeBase.load(path, index_file=True)
    assert not beside.exists() and fallback.exists() and fallback.parent == tmp_path / "tmp" / "mofi-kb-index"
    assert KnowledgeBase.load(path, index_file=True).lookup("alias 7") == kb.lookup("alias 7")


def test_a_full_size_kb_loads_well_under_a_second_from_its_index(tmp_path):
    """125k entities (the built KB's size): the first load parses and writes the index, later ones read it."""
    path = tmp_path / "kb.jsonl"
    write_kb(_things(125_000), path)
    cold = KnowledgeBase.load(path)
    started = time.process_time()
    kb = KnowledgeBase.load(path)
    hits = kb.lookup("thing 124999")
    assert time.process_time() - started < 1.0
    assert [e.id for e in hits] == ["t:124999"] and len(kb) == len(cold) == 125_000
    assert [e.id for e in kb.lookup("other name 5")] == [e.id for e in cold.lookup("other name 5")]


def test_line_numbers_count_blank_lines_and_crlf_is_accepted(tmp_path):
    path = tmp_path / "kb.jsonl"
    path.write_bytes(b'{"id": "a:1", "name": "one"}\r\n\r\n{"id": "a:2", "name": "two", "aliases": ["deux"]}\r\n')
    kb = KnowledgeBase.load(path, index_file=True)
    assert kb.lookup("deux")[0].id == "a:2" and kb.get("a:1").name == "one"
    assert KnowledgeBase.load(path, index_file=True).lookup("Two")[0].aliases == ("deux",)
    path.write_text('{"id": 7, "name": 8}\n')  # non-string fields are read as strings, as Entity.from_dict does
    assert KnowledgeBase.load(path).lookup("8")[0].id == "7"
    path.write_text('{"id": "a:1", "name": "one"}\n\n{"id": "a:2"}\n')  # no name
    with pytest.raises(ValueError, match=r"kb.jsonl:3"):
        KnowledgeBase.load(path)


def test_version_is_the_content_hash_of_the_file_wherever_the_kb_comes_from(tmp_path):
    entities = [
        Entity("wn:2", "tiger", ("big cat",), "a cat", "animal", "wordnet", 0.5),
        Entity("a:1", "x", (), "", "", "s"),
    ]
    path = tmp_path / "kb.jsonl"
    write_kb(entities, path)
    loaded = KnowledgeBase.load(path)
    assert loaded.version == f"kb-{hashlib.sha256(path.read_bytes()).hexdigest()[:16]}"
    assert KnowledgeBase(entities).version == loaded.version  # built in memory: the file write_kb would write
    assert KnowledgeBase.load(path, index_file=True).version == loaded.version  # parsed, index written
    assert KnowledgeBase.load(path, index_file=True).version == loaded.version  # read back through the index
    write_kb([*entities, Entity("b:1", "y", (), "", "", "s")], path)
    assert KnowledgeBase.load(path).version != loaded.version


def test_i2e_records_without_a_kb_version_still_parse():
    """Records of stages older than the field (no field 5) parse, and their samples say so with an empty id."""
    from mofi.i2e.records import record_to_sample
    from mofi.v1 import records_pb2

    png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16
    old = records_pb2.I2ERecord(
        pair=records_pb2.Pair(pair_id="p1", text="a tiger", image_mime="image/png", image_bytes=png),
        entities=[records_pb2.EntityCandidate(entity_id="wn:2", name="tiger")],
    ).SerializeToString()
    sample = record_to_sample(records_pb2.I2ERecord.FromString(old), fetch=lambda uri: b"")
    assert sample.meta["kb_version"] == "" and sample.meta["entities"][0]["id"] == "wn:2"
    new = records_pb2.I2ERecord.FromString(old)
    new.kb_version = "kb-0123456789abcdef"
    assert record_to_sample(new, fetch=lambda uri: b"").meta["kb_version"] == "kb-0123456789abcdef"
