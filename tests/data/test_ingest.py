"""`mofi produce` from the formats people bring (WebDataset tars, Parquet/CSV/JSONL manifests, caption
folders) into the real broker: what arrives on the topic, resuming after a partial run, and the report
of bad items. Every fixture is written here: real tars (webdataset's TarWriter), real Parquet."""

from __future__ import annotations

import io
import json
import time
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.csv
import pyarrow.parquet as pq
import pytest
import webdataset as wds
from click.testing import CliRunner
from PIL import Image

from mofi.cli import main
from mofi.kafka import make_consumer
from mofi.objstore import ObjectStore
from mofi.v1 import records_pb2
from mofi_platform.databuild.ingest import Progress
from mofi_platform.databuild.pairs import pair_id


def image(i: int, fmt: str = "JPEG", size: tuple[int, int] = (24, 16)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, ((i * 37) % 256, (i * 91) % 256, (i * 53) % 256)).save(buf, format=fmt)
    return buf.getvalue()


def drain(settings, expected: int, timeout_s: float = 60.0) -> dict[str, records_pb2.Pair]:
    """Every record on the pairs topic (polled until ``expected`` came and a further poll finds none more);
    a key seen twice fails: the producer must never resend an acknowledged pair."""
    consumer = make_consumer(settings.kafka, f"check-{uuid.uuid4().hex[:6]}", [settings.kafka.pairs_topic])
    got: dict[str, records_pb2.Pair] = {}
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            polled = [r for part in consumer.poll(timeout_ms=1000).values() for r in part]
            for r in polled:
                assert r.key.decode() not in got, f"pair {r.key.decode()} sent twice"
                got[r.key.decode()] = records_pb2.Pair.FromString(r.value)
            if len(got) >= expected and not polled:
                break
    finally:
        consumer.close()
    return got


def produce(settings, *args: str):
    res = CliRunner().invoke(main, ["produce", *args], env=settings.to_env())
    assert res.exit_code == 0, res.output + repr(res.exception)
    return res.output


MIMES = {"jpg": "image/jpeg", "png": "image/png", "webp": "image/webp"}


def write_img2dataset_shards(folder: Path) -> dict[str, tuple[str, bytes, str]]:
    """Shards as img2dataset writes them: two good ones, one of bad items and one that is no tar at all;
    returns position -> (caption, image, mime) of the valid items."""
    folder.mkdir(parents=True, exist_ok=True)
    good: dict[str, tuple[str, bytes, str]] = {}
    fmts = ("jpg", "png", "webp")
    for s in range(2):
        with wds.TarWriter(str(folder / f"shards-{s:05d}.tar")) as sink:
            for k in range(5):
                key = f"{s:05d}{k:04d}"
                ext = fmts[k % 3]
                data = image(10 * s + k, {"jpg": "JPEG", "png": "PNG", "webp": "WEBP"}[ext])
                caption = f"A photo number {s}-{k} of a koala."
                meta = {"url": f"https://example.org/{key}.{ext}", "key": key, "status": "success"}
                sink.write({"__key__": key, ext: data, "txt": caption, "json": meta})
                good[f"shards-{s:05d}.tar/{key}"] = (caption, data, MIMES[ext])
    with wds.TarWriter(str(folder / "shards-00002.tar")) as sink:
        sink.write({"__key__": "000200000", "txt": "an image that failed to download", "json": {"status": "failed"}})
        sink.write({"__key__": "000200001", "jpg": b"\xff\xd8\xff not really a jpeg", "txt": "a broken jpeg"})
        sink.write({"__key__": "000200002", "png": image(7, "PNG"), "txt": "tiger " * 400})
        sink.write({"__key__": "000200003", "png": image(8, "PNG"), "txt": "   "})
        sink.write({"__key__": "000200004", "png": image(9, "PNG"), "txt": "A sailboat at sea."})
    good["shards-00002.tar/000200004"] = ("A sailboat at sea.", image(9, "PNG"), "image/png")
    (folder / "shards-00003.tar").write_bytes(b"this is not a tar archive at all" * 40)
    return good


def test_webdataset_shards_stream_resume_and_report_bad_items(settings, tmp_path):
    good = write_img2dataset_shards(tmp_path / "laion")
    pattern = str(tmp_path / "laion" / "shards-{00000..00003}.tar")
    progress = tmp_path / "progress.json"

    args = ["--webdataset", pattern, "--name", "laion", "--progress-file", str(progress)]
    out = produce(settings, *args, "--limit", "4")
    assert f"sent 4 pairs to {settings.kafka.pairs_topic}" in out
    saved = json.loads(progress.read_text())["units"]
    assert saved[str(tmp_path / "laion" / "shards-00000.tar")]["acked"] == 4

    out = produce(settings, *args)
    assert f"sent {len(good) - 4} pairs" in out  # the second run sends only what the first did not
    assert "5 bad items skipped:" in out
    for kind in ("missing_image", "undecodable_image", "caption_too_long", "empty_caption", "unreadable_shard"):
        assert f"  {kind:18} 1" in out
    assert "shards-00002.tar/000200002: caption of 2399 characters exceeds 2000" in out

    pairs = drain(settings, len(good))
    assert set(pairs) == {pair_id("laion", p) for p in good}
    for position, (caption, data, mime) in good.items():
        pair = pairs[pair_id("laion", position)]
        assert (pair.text, pair.image_bytes, pair.image_mime) == (caption, data, mime)
        assert (pair.source, pair.schema) == ("laion", "mofi.pair.v1")
    assert pairs[pair_id("laion", "shards-00000.tar/000000001")].original_path == "https://example.org/000000001.png"

    # a third run opens nothing done before: only the unreadable shard is tried (and reported) again
    out = produce(settings, *args)
    assert "sent 0 pairs" in out and "1 bad items skipped:" in out and "unreadable_shard" in out


def test_webdataset_shards_under_an_s3_prefix_or_pattern(settings, tmp_path):
    good = write_img2dataset_shards(tmp_path / "laion")
    store = ObjectStore(settings.s3)
    prefix = f"s3://{settings.s3.corpus_bucket}/byod/laion/"
    for s in range(3):
        store.put_file(f"{prefix}shards-{s:05d}.tar", tmp_path / "laion" / f"shards-{s:05d}.tar")
    out = produce(settings, "--webdataset", prefix, "--progress-file", str(tmp_path / "p.json"))
    assert f"sent {len(good)} pairs" in out and "4 bad items skipped:" in out
    assert set(drain(settings, len(good))) == {pair_id("laion", p) for p in good}
    # a pattern naming a shard that is not there: reported, and the run goes on to the next shard
    pattern = f"{prefix}shards-{{00000..00003}}.tar"
    out = produce(settings, "--webdataset", pattern, "--name", "laion2", "--progress-file", str(tmp_path / "q.json"))
    assert f"sent {len(good)} pairs" in out and "5 bad items skipped:" in out
    assert "shards-00003.tar#0: s3://" in out and "NoSuchKey" in out


@pytest.mark.parametrize("fmt", ["parquet", "csv", "jsonl"])
def test_manifest_with_paths_and_s3_uris(settings, tmp_path, fmt):
    store = ObjectStore(settings.s3)
    (tmp_path / "img").mkdir()
    rows = []
    for i in range(4):
        (tmp_path / "img" / f"{i}.jpg").write_bytes(image(i))
        rows.append({"url": f"img/{i}.jpg", "TEXT": f"A red bus number {i}.", "extra": i})
    uri = f"s3://{settings.s3.corpus_bucket}/byod/remote.png"
    store.put_bytes(uri, image(50, "PNG"), "image/png")
    rows.append({"url": uri, "TEXT": "A lighthouse on a cliff.", "extra": 5})
    rows.append({"url": "img/missing.jpg", "TEXT": "gone", "extra": 6})
    rows.append({"url": None, "TEXT": "no image at all", "extra": 7})
    path = tmp_path / f"captions.{fmt}"
    if fmt == "parquet":
        pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=2)
    elif fmt == "csv":
        pa.csv.write_csv(pa.Table.from_pylist(rows), path)
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in rows) + "{not json\n")
    args = ["--manifest", str(path), "--image-column", "url", "--caption-column", "TEXT"]
    out = produce(settings, *args, "--progress-file", str(tmp_path / "p.json"))
    bad = 3 if fmt == "jsonl" else 2
    assert "sent 5 pairs" in out and f"{bad} bad items skipped:" in out
    assert "img/missing.jpg not found" in out
    pairs = drain(settings, 5)
    assert sorted(p.text for p in pairs.values()) == sorted(r["TEXT"] for r in rows[:5])
    assert {p.source for p in pairs.values()} == {"captions"}
    by_path = {p.original_path: p for p in pairs.values()}
    assert by_path[uri].image_bytes == image(50, "PNG") and by_path["img/2.jpg"].image_bytes == image(2)


def test_manifest_missing_column_is_a_clear_error(settings, tmp_path):
    path = tmp_path / "m.parquet"
    pq.write_table(pa.Table.from_pylist([{"image": "a.jpg", "alt": "x"}]), path)
    res = CliRunner().invoke(main, ["produce", "--manifest", str(path)], env=settings.to_env())
    assert res.exit_code != 0 and "has no column caption" in res.output


def test_caption_folder(settings, tmp_path):
    root = tmp_path / "photos"
    (root / "trip").mkdir(parents=True)
    (root / "a.png").write_bytes(image(1, "PNG"))
    (root / "a.txt").write_text("A cat on a sofa.\n")
    (root / "trip" / "b.jpg").write_bytes(image(2))
    (root / "trip" / "b.txt").write_text("The Eiffel Tower at night.")
    (root / "trip" / "c.jpg").write_bytes(image(3))  # no caption
    (root / "trip" / "d.txt").write_text("a caption without its image")
    (root / "notes.md").write_text("ignored")
    out = produce(settings, "--folder", str(root), "--licence", "CC-BY-4.0", "--rate", "20")
    assert "sent 2 pairs" in out and "2 bad items skipped:" in out
    assert "trip/c: no caption" in out and "trip/d: no image" in out
    pairs = drain(settings, 2)
    assert {p.original_path: p.text for p in pairs.values()} == {
        "a.png": "A cat on a sofa.",
        "trip/b.jpg": "The Eiffel Tower at night.",
    }
    assert {p.licence for p in pairs.values()} == {"CC-BY-4.0"}
    assert set(pairs) == {pair_id("photos", "a"), pair_id("photos", "trip/b")}
    # the default progress file (under data.build_dir) makes a rerun send nothing
    assert "sent 0 pairs" in produce(settings, "--folder", str(root))


def test_progress_counts_only_an_unbroken_run_of_acknowledgements(tmp_path):
    path = tmp_path / "p.json"
    progress = Progress(path, "src")
    for index in (1, 2, 4):
        progress.done("u", index)
    progress.finish("u", 5)
    assert progress.skip("u") == 0  # item 0 unacknowledged: a restart sends everything again
    progress.done("u", 0)
    assert progress.skip("u") == 3
    progress.done("u", 3)
    assert progress.skip("u") is None  # all 5 came: the unit is done
    progress.save()
    assert Progress(path, "src").skip("u") is None
    with pytest.raises(ValueError, match="records the progress of 'src'"):
        Progress(path, "other")
