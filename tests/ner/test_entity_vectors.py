"""The entity-vector table: built by `mofi ner vectors` beside the knowledge base, found by the extractor,
and giving the same links as encoding entity texts on demand; a changed entity text is never served
from a stale table."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from mofi.cli import main
from mofi.kb import KnowledgeBase
from mofi_platform.services.common.entity_vectors import EntityVectors, vectors_path
from mofi_platform.services.ner.evaluation import load_evalset
from mofi_platform.services.ner.linking import entity_text
from tests.ner.conftest import EVALSET, KB_PATH


@pytest.fixture(scope="module")
def built_kb(tmp_path_factory):
    """The evaluation KB copied to a folder with its table built by the command (two worker processes)."""
    folder = tmp_path_factory.mktemp("kb")
    kb_file = folder / "kb.jsonl"
    shutil.copy(KB_PATH, kb_file)
    res = CliRunner().invoke(main, ["ner", "vectors", "--kb", str(kb_file), "--workers", "2"])
    assert res.exit_code == 0, res.output
    assert "entity vectors" in res.output
    return kb_file


def _links(extractor, texts):
    return [
        [(c.mention_index, c.entity.id, round(c.score, 3)) for c in ex.candidates] for ex in extractor.extract(texts)
    ]


def test_table_holds_every_entity_text_as_encoded_one_by_one(built_kb, extractor):
    table = EntityVectors.load(vectors_path(built_kb, extractor.encoder.tag))
    texts = list(dict.fromkeys(entity_text(e) for e in KnowledgeBase.load(built_kb)))
    assert table is not None and len(table) == len(texts) and table.dim == extractor.encoder.dim
    rows = table.rows(texts)
    assert None not in rows and sorted(rows) == list(range(len(texts)))
    sample = texts[::50]
    direct = extractor.encoder.encode(sample)  # fp32, other pass grouping than the two workers had
    stored = table.vectors[table.rows(sample)].astype(np.float32)
    assert np.abs(stored - direct).max() < 2e-3  # float16 rounding
    assert (np.sum(stored * direct, axis=1) > 0.9999).all()


def test_links_are_the_same_with_and_without_the_table(built_kb, extractor):
    texts = [r.text for r in load_evalset(EVALSET)]
    encoder = extractor.encoder
    saved_table, saved_cache = encoder.table, dict(encoder._cache)
    try:
        encoder.table, encoder._cache = None, {}
        on_demand = _links(extractor, texts)
        assert extractor.load_vectors(built_kb)
        encoder._cache = {}
        from_table = _links(extractor, texts)
    finally:
        encoder.table, encoder._cache = saved_table, saved_cache
    assert sum(map(len, on_demand)) > 100
    assert from_table == on_demand


def test_a_changed_entity_text_is_encoded_not_served_stale(built_kb, extractor):
    table = EntityVectors.load(vectors_path(built_kb, extractor.encoder.tag))
    entity = next(iter(KnowledgeBase.load(built_kb)))
    assert table.rows([entity_text(entity)])[0] is not None
    assert table.rows([entity_text(entity) + " (edited)"]) == [None]


def test_missing_or_unreadable_table_means_on_demand(tmp_path, extractor, caplog):
    saved = extractor.encoder.table
    try:
        assert not extractor.load_vectors(tmp_path / "kb.jsonl")
        assert "mofi ner vectors" in caplog.text
        vectors_path(tmp_path / "kb.jsonl", extractor.encoder.tag).write_bytes(b"not a table")
        assert not extractor.load_vectors(tmp_path / "kb.jsonl")
        assert extractor.encoder.table is None
    finally:
        extractor.encoder.table = saved


def test_command_names_a_missing_knowledge_base(tmp_path):
    res = CliRunner().invoke(main, ["ner", "vectors", "--kb", str(tmp_path / "none.jsonl")])
    assert res.exit_code != 0 and "no knowledge base" in res.output


def test_rerun_keeps_a_complete_table_and_rebuilds_a_stale_one(built_kb, extractor, tmp_path):
    table_file = vectors_path(built_kb, extractor.encoder.tag)
    before = table_file.stat().st_mtime_ns
    res = CliRunner().invoke(main, ["ner", "vectors", "--kb", str(built_kb), "--workers", "1"])
    assert res.exit_code == 0, res.output
    assert "up to date" in res.output and table_file.stat().st_mtime_ns == before

    kb_file = tmp_path / "kb.jsonl"  # the same KB plus one entity the table lacks
    shutil.copy(built_kb, kb_file)
    shutil.copy(table_file, vectors_path(kb_file, extractor.encoder.tag))
    with kb_file.open("a") as f:
        f.write('{"id": "x:1", "name": "zorblax", "aliases": ["zorblax"], "description": "a made-up thing"}\n')
    res = CliRunner().invoke(main, ["ner", "vectors", "--kb", str(kb_file), "--workers", "1"])
    assert res.exit_code == 0, res.output
    rebuilt = EntityVectors.load(vectors_path(kb_file, extractor.encoder.tag))
    assert rebuilt is not None and None not in rebuilt.rows(["zorblax: a made-up thing"])
    assert len(rebuilt) == len(EntityVectors.load(table_file)) + 1


def test_encoder_tag_names_the_model_not_its_folder(tmp_path):
    from mofi_platform.services.common.entity_vectors import encoder_tag

    def model_folder(parent: str, config: str, weights: bytes):
        folder = tmp_path / parent / "model"  # the same leaf name, as packaged models often have
        folder.mkdir(parents=True)
        (folder / "config.json").write_text(config)
        (folder / "model.safetensors").write_bytes(weights)
        return str(folder)

    a = model_folder("a", '{"hidden_size": 384}', b"x" * 10)
    assert encoder_tag(a) == encoder_tag(a) and encoder_tag(a).startswith("a-") and encoder_tag(a).endswith("-48tok")
    assert encoder_tag(a) != encoder_tag(model_folder("b", '{"hidden_size": 768}', b"x" * 10))  # other config
    other_weights = model_folder("c", '{"hidden_size": 384}', b"x" * 11)
    assert encoder_tag(a).split("-")[1] != encoder_tag(other_weights).split("-")[1]
    assert encoder_tag(a, 32) != encoder_tag(a)
