"""Corpus shards, KB and benchmark built from the miniature packages; the `mofi data` commands end to end."""

import json

from click.testing import CliRunner

from mofi.cli import main
from mofi.objstore import ObjectStore
from mofi.settings import S3Settings
from mofi_platform.databuild.build import build_benchmark, build_corpus
from mofi_platform.databuild.corpus import CorpusSample, ShardWriter, iter_corpus
from mofi_platform.databuild.extractors import EXTRACTORS
from mofi_platform.training.evaluation import load_benchmark


def test_shards_round_trip_on_s3(store, unique):
    writer = ShardWriter(store, f"s3://corpus-{unique}", "t", shard_size=2)
    samples = [
        CorpusSample(f"{i:016x}", f"text {i}", "t", "CC0-1.0", f"p/{i}.png", b"\x89PNG" + bytes([i]), "image/png")
        for i in range(5)
    ]
    for s in samples:
        writer.add(s, 8, 8)
    assert len(writer.close()) == 3
    store.put_bytes(f"s3://corpus-{unique}/kb/kb.jsonl", b"{}\n")  # other objects under the prefix are ignored
    assert sorted(iter_corpus(store, f"s3://corpus-{unique}/"), key=lambda s: s.pair_id) == samples


def test_build_corpus_counts_rejects_and_caps_per_source(tmp_path, dirs):
    store = ObjectStore(S3Settings())
    reports = {
        r.source: r
        for r in build_corpus(
            store,
            str(tmp_path),
            dirs,
            sources=list(EXTRACTORS),
            limit_per_source=0,
            max_pixels=40_000_000,
            image_size=64,
            shard_size=4,
            workers=1,
        )
    }
    oc = reports["openclipart"]
    assert oc.rejected["too_small"] == 1 and oc.kept == oc.found - 1  # the 6x3 px flag
    samples = list(iter_corpus(store, str(tmp_path)))
    assert len(samples) == sum(r.kept for r in reports.values())
    assert {s.source for s in samples} == set(EXTRACTORS)
    capped = build_corpus(
        store,
        str(tmp_path / "capped"),
        dirs,
        sources=["tuxpaint"],
        limit_per_source=2,
        max_pixels=40_000_000,
        image_size=64,
        shard_size=4,
        workers=1,
    )[0]
    again = build_corpus(
        store,
        str(tmp_path / "again"),
        dirs,
        sources=["tuxpaint"],
        limit_per_source=2,
        max_pixels=40_000_000,
        image_size=64,
        shard_size=4,
        workers=1,
    )[0]
    assert (capped.found, capped.selected, capped.kept) == (reports["tuxpaint"].found, 2, 2)
    assert (again.found, again.selected, again.kept) == (capped.found, capped.selected, capped.kept)
    assert {s.pair_id for s in iter_corpus(store, str(tmp_path / "capped"))} == {
        s.pair_id for s in iter_corpus(store, str(tmp_path / "again"))
    }  # the same subset every run


def test_benchmark_is_gpr1200_layout_with_two_domains(tmp_path, dirs):
    stats = build_benchmark(dirs, tmp_path, emoji_classes=10, max_pixels=40_000_000, image_size=48)
    bench = load_benchmark(tmp_path)
    assert set(bench.domains) == {"emoji", "sky"}
    labels = list(bench.labels)
    assert all(labels.count(c) >= 4 for c in set(labels))
    assert stats.rejected["duplicate_artwork"] >= 1  # a sky culture that reuses another's drawing
    assert bench.class_text["sky-Ori"].startswith("Orion: constellation")
    assert bench.class_text["emoji-1f405"].startswith("tiger: emoji")


def test_cli_build_report_and_errors(tmp_path, fixture_cache):
    env = {"MOFI_DATA_CACHE_DIR": str(fixture_cache), "MOFI_DATA_BUILD_DIR": str(tmp_path / "build")}
    runner = CliRunner()
    out = tmp_path / "out"
    res = runner.invoke(main, ["data", "build", "--out", str(out), "--workers", "1", "--emoji-classes", "5"], env=env)
    assert res.exit_code == 0, res.output
    report = json.loads((tmp_path / "build" / "report.json").read_text())
    assert sum(c["kept"] for c in report["corpus"]) == len(list(iter_corpus(ObjectStore(S3Settings()), str(out))))
    assert report["kb"]["by_source"]["tuxpaint"] >= 1 and (out / "kb" / "kb.jsonl").exists()
    assert report["benchmark"]["classes"] == {"emoji": 2, "sky": 2}
    assert "## Knowledge base" in res.output and "too_small 1" in res.output
    again = runner.invoke(main, ["data", "report"], env=env)
    assert again.exit_code == 0 and res.output.strip().endswith(again.output.strip())  # tqdm lines precede it

    missing = runner.invoke(
        main, ["data", "build", "--out", str(out)], env={**env, "MOFI_DATA_CACHE_DIR": str(tmp_path / "none")}
    )
    assert missing.exit_code != 0 and "run `mofi data fetch` first" in missing.output
    no_s3 = runner.invoke(
        main,
        ["data", "build", "--only", "kb", "--out", "s3://mofi-corpus"],
        env={**env, "MOFI_S3_ENDPOINT": "127.0.0.1:9"},
    )
    assert no_s3.exit_code == 1 and "cannot write to s3://mofi-corpus (S3 endpoint 127.0.0.1:9)" in no_s3.output
    unknown = runner.invoke(main, ["data", "build", "--source", "flickr"], env=env)
    assert unknown.exit_code == 2 and "unknown corpus sources: flickr" in unknown.output
