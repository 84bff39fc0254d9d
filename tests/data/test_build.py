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


def build(store, out, dirs, **kw):
    opts = {"max_pixels": 40_000_000, "image_size": 32, "shard_size": 4, "workers": 1, **kw}
    return {r.source: r for r in build_corpus(store, str(out), dirs, **opts)}


def test_seeded_subset_takes_pairs_from_every_source_in_proportion(tmp_path, dirs):
    store = ObjectStore(S3Settings())
    sources = ["tuxpaint", "openmoji", "mdi", "ph", "fluent", "game-icons"]
    full = build(store, tmp_path / "full", dirs, sources=sources)
    total = sum(r.selected for r in full.values())
    sub = build(store, tmp_path / "sub", dirs, sources=sources, pairs=12, seed=0)
    build(store, tmp_path / "again", dirs, sources=sources, pairs=12, seed=0)
    other = build(store, tmp_path / "other", dirs, sources=sources, pairs=12, seed=1)
    assert total > 12 and sum(r.selected for r in sub.values()) == 12
    assert all(sub[s].found == full[s].found for s in sources)  # found counts the whole source
    ids = lambda out: {s.pair_id for s in iter_corpus(store, str(out))}  # noqa: E731
    assert ids(tmp_path / "sub") == ids(tmp_path / "again") != ids(tmp_path / "other")
    assert ids(tmp_path / "sub") <= ids(tmp_path / "full")
    assert sum(r.selected for r in other.values()) == 12


def test_build_resumes_per_source_and_drops_shards_of_a_larger_selection(tmp_path, dirs):
    store = ObjectStore(S3Settings())
    messages: list[str] = []
    first = build(store, tmp_path, dirs, sources=["ph", "mdi"], progress=messages.append)
    assert [m.split(":")[0] for m in messages] == ["[1/2] ph", "[2/2] mdi"] and "kept" in messages[0]
    assert first["ph"].kept > 4  # more than one shard
    shards = sorted(u for u in store.list(str(tmp_path)) if u.endswith(".tar"))
    messages.clear()
    again = build(store, tmp_path, dirs, sources=["ph", "mdi"], progress=messages.append)
    assert all(m.endswith("already built, reused") for m in messages)
    assert {s: r.to_dict() for s, r in again.items()} == {s: r.to_dict() for s, r in first.items()}
    assert sorted(u for u in store.list(str(tmp_path)) if u.endswith(".tar")) == shards
    messages.clear()
    capped = build(store, tmp_path, dirs, sources=["ph"], limit_per_source=2, progress=messages.append)
    stale = len(first["ph"].shards) - 1
    assert capped["ph"].kept == 2 and messages[0].endswith(f"; {stale} shards of an earlier build removed")
    left = [s for s in iter_corpus(store, str(tmp_path))]
    assert sum(s.source == "ph" for s in left) == 2 and sum(s.source == "mdi" for s in left) == first["mdi"].kept


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
    assert report["selection"] == {"max_per_source": 0, "pairs": 0, "seed": 0, "subset": "random"}  # uncapped
    assert f"[{len(EXTRACTORS)}/{len(EXTRACTORS)}] " in res.output  # progress per source
    same = report["kb"]["same_as"]
    assert same["alias_entities"] >= 1 and same["canonical_entities"] >= 1 and "Same-as links:" in res.output
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
    capped = runner.invoke(
        main,
        ["data", "build", "--only", "corpus", "--source", "ph", "--max-per-source", "3", "--out", str(tmp_path / "c")],
        env=env,
    )
    assert capped.exit_code == 0, capped.output
    assert json.loads((tmp_path / "build" / "report.json").read_text())["corpus"][0]["selected"] == 3
    assert "at most 3 pairs per source" in capped.output
    subset = runner.invoke(
        main,
        ["data", "build", "--only", "corpus", "--source", "ph", "--source", "mdi", "--pairs", "4", "--seed", "7"]
        + ["--out", str(tmp_path / "s")],
        env=env,
    )
    assert subset.exit_code == 0, subset.output
    built = json.loads((tmp_path / "build" / "report.json").read_text())
    assert built["selection"] == {"max_per_source": 0, "pairs": 4, "seed": 7, "subset": "random"}
    assert sum(c["selected"] for c in built["corpus"]) == 4 and "seeded subset of 4 pairs (seed 7)" in subset.output
    dense = runner.invoke(
        main,
        ["data", "build", "--only", "corpus", "--pairs", "4", "--subset", "dense", "--out", str(tmp_path / "d")],
        env=env,
    )
    assert dense.exit_code == 0, dense.output
    assert json.loads((tmp_path / "build" / "report.json").read_text())["selection"]["subset"] == "dense"
    assert "dense (whole entities drawn by many sources) subset of 4 pairs" in dense.output
    unknown = runner.invoke(main, ["data", "build", "--source", "flickr"], env=env)
    assert unknown.exit_code == 2 and "unknown corpus sources: flickr" in unknown.output
