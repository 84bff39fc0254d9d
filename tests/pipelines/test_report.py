"""The demo's HTML report, built from real I2E shards and no-entity records in the local S3 server."""

from __future__ import annotations

import io
import json
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image

from mofi.i2e import I2ESample, write_shard
from mofi.objstore import ObjectStore
from mofi.v1 import records_pb2
from mofi_platform.pipelines.report import SearchExample, SearchHit, build_report
from mofi_platform.pipelines.report.ablation import load_ablation, markdown_table
from mofi_platform.services.scorer.drops import record_no_entity

MALICIOUS = '<script>alert(1)</script> a red apple & a "pear"'


def _png(color: tuple[int, int, int], size: tuple[int, int] = (64, 48)) -> bytes:
    im = Image.new("RGB", size, color)
    im.paste((255, 255, 255), (8, 8, 24, 24))
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()


def _ent(eid: str, name: str, score: float) -> dict:
    return {"id": eid, "name": name, "description": f"{name}: a thing", "score": score}


SHARD_SAMPLES = [
    [
        I2ESample(
            "p-apple",
            _png((200, 20, 20)),
            "png",
            {
                "text": MALICIOUS,
                "source": "tuxpaint",
                "licence": "GPL-2+",
                "entities": [_ent("Q89", "apple", 0.31), _ent("Q1", "fruit", 0.27)],
                "dropped": [_ent("Q10", "pearwood", 0.12)],
            },
        ),
        I2ESample(
            "p-cat",
            _png((30, 30, 30)),
            "png",
            {
                "text": "A black cat on a mat",
                "source": "tuxpaint",
                "licence": "GPL-2+",
                "entities": [_ent("Q146", "cat", 0.35)],
                "dropped": [_ent("Q2", "mat", 0.18), _ent("Q3", "Black Sea", 0.05)],
            },
        ),
        I2ESample(
            "p-banana",
            _png((240, 220, 20)),
            "png",
            {
                "text": "Banana",
                "source": "openmoji",
                "licence": "CC-BY-SA-4.0",
                "entities": [_ent("Q503", "banana", 0.29), _ent("Q1", "fruit", 0.24), _ent("Q4", "yellow", 0.22)],
            },
        ),
    ],
    [
        I2ESample(
            "p-dog",
            _png((140, 90, 40)),
            "png",
            {
                "text": "A dog",
                "source": "gcompris",
                "licence": "GPL-3+",
                "entities": [_ent("Q144", "dog", 0.33)],
                "dropped": [],
            },
        ),
        I2ESample(
            "p-apple2",
            _png((180, 0, 0)),
            "png",
            {
                "text": "Green and red apples",
                "source": "openmoji",
                "licence": "CC-BY-SA-4.0",
                "entities": [_ent("Q89", "apple", 0.30)],
                "dropped": [_ent("Q5", "green party", 0.11)],
            },
        ),
    ],
]

ABLATION = {  # a benchmarks/train_ablation.py results.json
    "snapshot": "s3://ablation-i2e/snapshots/tuxpaint/manifest.json",
    "rows": [
        {"row": "frozen ImageNet", "map": 0.5455, "map_per_domain": {"culture": 0.5264}, "zero_shot_top1": None},
        {"row": "multitask <b>x</b>", "map": 0.5235, "map_per_domain": {"culture": 0.4990}, "zero_shot_top1": 0.327},
        {"row": "contrastive", "map": 0.5415, "map_per_domain": {"culture": 0.5097}, "zero_shot_top1": 0.317},
    ],
    "note": "(train s: wall-clock seconds.)",
}

EVAL = {
    "model": "mofi-tiny-vit",
    "version": "demo-run@step-60",
    "benchmark": "/tmp/bench",
    "num_images": 104,
    "num_classes": 26,
    "map": 0.4123,
    "map_per_domain": {"culture": 0.3811, "nature": 0.4567},
    "linear_probe_top1": 0.442,
    "zero_shot_top1": None,
    "image_size": 96,
    "map_seen": 0.5012,
    "map_unseen": 0.3702,
    "seen_classes": ["animals", "food"],
    "unseen_classes": ["town"],
    "seen_matched_by": "entity id",
    "baseline": {
        "model": "imagenet-effnet-lite0",
        "image_size": 96,
        "map": 0.3931,
        "map_seen": 0.45,
        "map_unseen": 0.36,
    },
    "chance": {"map": 0.0712, "std": 0.001, "draws": 5, "seed": 0},
    "published": None,
    "class_loss_chance": {"value": 12.83, "num_classes": 619, "scale": 32.0, "margin": 0.2},
    "gate": {
        "against": ["baseline", "published"],
        "min_gain": 0.0,
        "min_map": 0.0,
        "references": {"baseline": 0.3931, "published": None},
        "passed": True,
        "failures": [],
    },
}


class _Doc(HTMLParser):
    """Start tags with their attributes, and the concatenated text."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, {k: v or "" for k, v in attrs}))

    def handle_data(self, data):
        self.text.append(data)


def _parse(path: Path) -> tuple[str, _Doc]:
    raw = path.read_text(encoding="utf-8")
    doc = _Doc()
    doc.feed(raw)
    doc.close()
    return raw, doc


def _write_dataset(settings, store: ObjectStore) -> None:
    prefix = f"s3://{settings.s3.i2e_bucket}/{settings.writer.prefix}"
    for i, samples in enumerate(SHARD_SAMPLES):
        write_shard(store, f"{prefix}/shard-{i:06d}.tar", samples)
    rec = records_pb2.I2ERecord(
        pair=records_pb2.Pair(pair_id="p-none", text="Tux <b>waves</b> at the Eiffel Tower", source="tuxpaint"),
        dropped=[records_pb2.EntityCandidate(entity_id="Q243", name="Eiffel Tower", clip_score=0.08)],
        scorer_model="clip@test",
    )
    record_no_entity(store, settings.s3.i2e_bucket, rec)


def test_report_from_real_shards(settings, tmp_path):
    store = ObjectStore(settings.s3)
    _write_dataset(settings, store)
    ablation = tmp_path / "results.json"
    ablation.write_text(json.dumps(ABLATION))
    metrics = [{"step": s, "loss": 5.0 / s, "class_loss": 4.0 / s, "contrastive_loss": 1.0 / s} for s in range(1, 21)]
    searches = [
        SearchExample(
            query_text="a red apple",
            hits=[
                SearchHit("p-apple", 0.91, ["apple", "fruit"], MALICIOUS, "tuxpaint"),
                SearchHit("p-apple2", 0.88, ["apple"], "Green and red apples", "openmoji"),
                SearchHit("p-gone", 0.40, ["ghost"], "not in any shard", "nowhere"),
            ],
        ),
        SearchExample(
            query_image=_png((235, 215, 30)),
            hits=[
                {"pair_id": "p-banana", "score": 0.77, "entity_names": ["banana"]},
                SearchHit("p-dog", 0.21),
            ],
        ),
    ]
    summary = {
        "pairs streamed": 6953,
        "dead-lettered": 12,
        "I2E snapshot": "s3://mofi-i2e/snapshots/v1/manifest.json",
        "mAP": 0.41,
        "wall time": "17 min",
    }

    path = build_report(
        tmp_path / "report",
        settings=settings,
        summary=summary,
        eval_results=EVAL,
        run_metrics={"demo-multitask": metrics},
        ablation_results=ablation,
        searches=searches,
        max_examples=12,
    )

    assert path == tmp_path / "report" / "index.html"
    raw, doc = _parse(path)
    text = " ".join(" ".join(doc.text).split())

    # nothing executable, nothing fetched: the alt-text is escaped, every src is inline
    assert not [t for t, _ in doc.tags if t in ("script", "link", "iframe")]
    assert "<script>alert(1)</script>" not in raw
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in raw
    assert "Tux &lt;b&gt;waves&lt;/b&gt;" in raw
    imgs = [a for t, a in doc.tags if t == "img"]
    assert imgs and all(a["src"].startswith("data:image/") for a in imgs)

    # I2E statistics: exactly what was written
    samples = [s for shard in SHARD_SAMPLES for s in shard]
    stats = {a["data-stat"]: a["data-value"] for t, a in doc.tags if "data-stat" in a}
    assert stats["shards"] == "2"
    assert stats["images"] == str(len(samples))
    assert stats["entities"] == str(len({e["id"] for s in samples for e in s.meta["entities"]}))
    assert stats["entity_labels"] == str(sum(len(s.meta["entities"]) for s in samples))
    assert stats["no_entity"] == "1"
    assert stats["dropped_in_shards"] == str(sum(len(s.meta.get("dropped", [])) for s in samples))
    per_image = Counter(len(s.meta["entities"]) for s in samples)
    bins = {a["data-bin"]: a["data-count"] for t, a in doc.tags if "data-bin" in a}
    assert bins == {str(k): str(per_image.get(k, 0)) for k in range(min(per_image), max(per_image) + 1)}
    for source, n in Counter(s.meta["source"] for s in samples).items():
        assert f"{source} {n}" in text

    # kept and dropped entities with scores, and the no-entity pair's candidates
    chips = [
        (a["class"], a.get("title")) for t, a in doc.tags if t == "span" and a.get("class", "").startswith("chip ")
    ]
    assert ("chip keep", "Q146") in chips and ("chip drop", "Q2") in chips and ("chip drop", "Q243") in chips
    assert "cat 0.350" in text and "mat 0.180" in text and "Eiffel Tower 0.080" in text
    examples = [a["data-pair-id"] for t, a in doc.tags if a.get("class") == "card example"]
    assert sorted(examples) == sorted(s.pair_id for s in samples)
    assert "dropped candidates not recorded" in text  # p-banana has no dropped list
    assert [a["data-pair-id"] for t, a in doc.tags if a.get("class") == "card noent"] == ["p-none"]

    # searches: every hit that resolves to a written pair has its image; the unknown one does not
    written = {s.pair_id for s in samples}
    hits = [a["data-pair-id"] for t, a in doc.tags if a.get("class") == "card hit"]
    assert hits == ["p-apple", "p-apple2", "p-gone", "p-banana", "p-dog"]
    hit_imgs = [a["data-pair-id"] for a in imgs if a.get("class") == "hit"]
    assert sorted(hit_imgs) == sorted(h for h in hits if h in written)
    assert [a for a in imgs if a.get("class") == "query"]  # the query image beside its hits
    assert "“a red apple”" in text and "0.910" in text
    assert "banana" in text and "A dog" in text  # text filled in from the shard when the hit has none

    # summary, training, evaluation, ablation
    assert "pairs streamed 6,953" in text and "wall time 17 min" in text
    assert any(a.get("alt") == "training curves" for a in imgs)
    metric = {a["data-metric"]: None for t, a in doc.tags if "data-metric" in a}
    assert {"map", "map_culture", "map_nature", "zero_shot_top1", "linear_probe_top1"} <= set(metric)
    assert {"baseline_map", "chance_map", "map_seen", "map_unseen", "class_loss_chance"} <= set(metric)
    # the chart: the model's mAP beside the baseline at the same input size and chance, then seen/unseen
    bars = {a["data-bar"]: float(a["data-value"]) for t, a in doc.tags if "data-bar" in a}
    assert bars == {
        "model": 0.4123,
        "baseline": 0.3931,
        "chance": 0.0712,
        "seen": 0.5012,
        "unseen": 0.3702,
        "baseline_seen": 0.45,
        "baseline_unseen": 0.36,
    }
    assert "frozen ImageNet baseline (96 px)" in text and "model, unseen classes (1)" in text
    assert "Quality gate against baseline, published, margin 0, floor 0: passed" in text
    assert "Chance level of the class loss: 12.83" in text and "C = 619 classes" in text
    assert "0.4123" in text and "0.4567" in text and "demo-run@step-60" in text
    assert "frozen ImageNet" in text and "0.4990" in text and "train s: wall-clock seconds." in text
    assert "never" not in text and "not a table" not in text  # only the rows of results.json
    assert "&lt;b&gt;x&lt;/b&gt;" in raw
    assert path.stat().st_size < 2_000_000
    best = [a for t, a in doc.tags if t == "td" and "best" in a.get("class", "")]
    assert len(best) == 3  # 0.5455, 0.5264 and 0.327: the best of each metric column
    assert "Not available" not in text and "could not be built" not in text


def test_report_with_missing_inputs(settings, tmp_path):
    path = build_report(
        tmp_path / "r",
        settings=settings,
        summary={},
        eval_results=None,
        run_metrics={},
        ablation_results=tmp_path / "missing" / "results.json",
        searches=[],
    )
    _, doc = _parse(path)
    text = " ".join(" ".join(doc.text).split())
    for section in ("summary", "i2e", "examples", "training", "ablation", "search"):
        assert any(t == "section" and a.get("id") == section for t, a in doc.tags)
    assert "Not available: no evaluation results" in text
    assert f"Not available: {tmp_path / 'missing' / 'results.json'} does not exist" in text
    assert "Not available: no training metrics" in text
    assert "Not available: no searches were run" in text
    assert f"no I2E shards under s3://{settings.s3.i2e_bucket}/" in text
    assert "could not be built" not in text


def test_old_shards_without_dropped_lists_and_a_damaged_shard(settings, tmp_path):
    store = ObjectStore(settings.s3)
    prefix = f"s3://{settings.s3.i2e_bucket}/{settings.writer.prefix}"
    old = [
        I2ESample(
            "p-old",
            _png((0, 90, 200)),
            "png",
            {"text": "An old record", "source": "tuxpaint", "entities": [_ent("Q7", "sky", 0.4)]},
        )
    ]
    write_shard(store, f"{prefix}/shard-000000.tar", old)
    write_shard(store, f"{prefix}/shard-000001.tar", [I2ESample("p-bad", _png((1, 2, 3)), "png", {"entities": []})])
    store.put_bytes(f"{prefix}/shard-000001.tar", b"not a tar")  # manifest present, tar damaged

    path = build_report(
        tmp_path / "r",
        settings=settings,
        summary={"ok": True},
        eval_results={"other": "shape"},
        searches=[SearchExample(query_text="sky", hits=[SearchHit("p-old", 0.5)])],
    )
    raw, doc = _parse(path)
    text = " ".join(" ".join(doc.text).split())
    assert "1 shard(s) could not be read" in text
    assert "dropped candidates not recorded" in text
    assert "These shards carry no per-image dropped lists" in text
    assert "Not available: no evaluation results" in text
    assert [a["data-pair-id"] for t, a in doc.tags if t == "img" and a.get("class") == "hit"] == ["p-old"]
    assert "could not be built" not in text


def test_ablation_table(tmp_path):
    path = tmp_path / "results.json"
    path.write_text(json.dumps(ABLATION))
    table = load_ablation(path)
    assert [c.title for c in table.columns] == ["row", "mAP", "mAP culture", "zero-shot top-1"]
    assert [c.cell(table.rows[0]) for c in table.columns] == ["frozen ImageNet", "0.5455", "0.5264", "n/a"]
    assert table.note == "(train s: wall-clock seconds.)"
    assert markdown_table(table.rows).splitlines()[:3] == [
        "| row | mAP | mAP culture | zero-shot top-1 |",
        "|---|---|---|---|",
        "| frozen ImageNet | 0.5455 | 0.5264 | n/a |",
    ]
    path.write_text(json.dumps({"rows": []}))
    assert load_ablation(path).rows == []


def test_committed_ablation_results_are_the_rows_of_results_md():
    """benchmarks/ablation/results.json, written as Markdown, is the table in RESULTS.md."""
    root = Path(__file__).resolve().parents[2]
    table = load_ablation(root / "benchmarks" / "ablation" / "results.json")
    assert len(table.rows) == 4
    assert markdown_table(table.rows) in (root / "RESULTS.md").read_text()
    assert table.note and table.note in " ".join((root / "RESULTS.md").read_text().split())


@pytest.mark.parametrize("hit", [{"pair_id": "x", "score": 1}, SearchHit("x", 1.0)])
def test_hits_in_any_shape_are_accepted(settings, tmp_path, hit):
    path = build_report(tmp_path / "r", settings=settings, searches=[SearchExample(query_text="q", hits=[hit])])
    assert 'data-pair-id="x"' in path.read_text()
