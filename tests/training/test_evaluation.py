"""GPR1200-protocol mAP against sklearn's AP, zero-shot, linear probe, and `mofi eval` end to end."""

from __future__ import annotations

import io
import json
import random

import numpy as np
import pytest
from click.testing import CliRunner
from sklearn.metrics import average_precision_score

from mofi.cli import main
from mofi.objstore import ObjectStore
from mofi.settings import S3Settings
from mofi_platform import training
from mofi_platform.training.checkpoint import save_checkpoint
from mofi_platform.training.evaluation import (
    average_precisions,
    linear_probe_accuracy,
    load_benchmark,
    retrieval_map,
    zero_shot_accuracy,
)
from mofi_platform.training.losses import cosface_chance_loss
from mofi_platform.training.references import BASELINE, chance_map, seen_classes
from tests.training.conftest import COLOURS, SHAPES, draw


def test_every_image_queries_the_whole_set_itself_included():
    rng = np.random.default_rng(0)
    labels = np.array(list("aaabbbbcc"))
    emb = rng.normal(size=(9, 5)) + np.where(labels[:, None] == "a", 1.0, 0.0)
    aps = average_precisions(emb, labels)
    x = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    for q in range(9):  # sklearn's (full) AP over the whole set, the query included as a relevant item
        assert aps[q] == pytest.approx(average_precision_score(labels == labels[q], x @ x[q]))
    # the query itself ranks first, so a singleton-like perfect clustering gives mAP 1
    perfect = np.eye(3)[[0, 0, 1, 1, 2, 2]] + 0.01 * rng.normal(size=(6, 3))
    assert retrieval_map(perfect, list("aabbcc"), ["d1"] * 6)["map"] == pytest.approx(1.0)


def test_per_domain_map_averages_that_domains_queries():
    rng = np.random.default_rng(1)
    labels = np.array(list("aabbccdd"))
    domains = np.array(["x"] * 4 + ["y"] * 4)
    emb = rng.normal(size=(8, 4))
    aps = average_precisions(emb, labels)
    out = retrieval_map(emb, labels, domains)
    assert out["map_per_domain"] == pytest.approx({"x": aps[:4].mean(), "y": aps[4:].mean()})
    assert out["map"] == pytest.approx(aps.mean())


def test_zero_shot_and_linear_probe():
    rng = np.random.default_rng(2)
    centres = {c: rng.normal(size=8) for c in "abc"}
    labels = [c for c in "abc" for _ in range(6)]
    emb = np.stack([centres[c] + 0.1 * rng.normal(size=8) for c in labels])
    assert zero_shot_accuracy(emb, labels, centres) == 1.0
    swapped = {"a": centres["b"], "b": centres["a"], "c": centres["c"]}
    assert zero_shot_accuracy(emb, labels, swapped) == pytest.approx(1 / 3)
    assert linear_probe_accuracy(emb, labels) == 1.0
    noise = rng.normal(size=(60, 8))
    pick = random.Random(3)
    assert linear_probe_accuracy(noise, [pick.choice("abcde") for _ in range(60)]) < 0.6


@pytest.fixture()
def shapes_benchmark(tmp_path):
    rng = random.Random(5)
    root = tmp_path / "bench"
    root.mkdir()
    for shape in SHAPES:
        for colour in COLOURS:
            for k in range(2):
                (root / f"{shape.split(':')[1]}_{colour.split(':')[1]}{k}.png").write_bytes(
                    draw(shape, colour, rng, 64)
                )
    (root / "domains.json").write_text(
        json.dumps({"circle": "round", "square": "angular", "triangle": "angular", "cross": "angular"})
    )
    (root / "classes.json").write_text(
        json.dumps(
            {
                "circle": {"name": "circle", "description": SHAPES["wn:circle"][1], "entity": "wn:circle"},
                "square": {"name": "square", "description": "", "entity": "wn:square"},
                "triangle": {"name": "triangle", "description": "", "entity": "wn:triangle"},
                "cross": {"name": "cross", "description": "", "entity": "wn:crux"},
            }
        )
    )
    (root / "README.txt").write_text("not an image")
    return root


def test_benchmark_layout(shapes_benchmark):
    bench = load_benchmark(shapes_benchmark)
    assert len(bench.images) == 16 and set(bench.labels) == {"circle", "square", "triangle", "cross"}
    assert set(bench.domains) == {"round", "angular"}
    assert bench.class_text["circle"].startswith("circle: ellipse") and bench.class_text["cross"] == "cross"
    entities = {"circle": "wn:circle", "square": "wn:square", "triangle": "wn:triangle", "cross": "wn:crux"}
    assert bench.class_entity == entities
    assert bench.digest == load_benchmark(shapes_benchmark).digest
    (shapes_benchmark / "circle_red0.png").write_bytes(draw("wn:circle", "wn:blue", random.Random(9), 64))
    assert bench.digest != load_benchmark(shapes_benchmark).digest  # by content, not by name


def test_chance_is_the_map_of_random_embeddings(shapes_benchmark):
    bench = load_benchmark(shapes_benchmark)
    chance = chance_map(bench)
    rngs = [np.random.default_rng(s) for s in range(200)]
    direct = [average_precisions(rng.normal(size=(16, 8)), bench.labels).mean() for rng in rngs]
    assert chance["draws"] == 5 and chance == chance_map(bench)  # seeded: the same number every time
    assert abs(chance["map"] - np.mean(direct)) < 3 * np.std(direct) / np.sqrt(5) + 0.01
    assert chance["map"] > 4 / 16  # above the class share: every query finds itself first


def test_seen_classes_by_entity_id_canonical_id_or_name(shapes_benchmark):
    bench = load_benchmark(shapes_benchmark)
    classes = [{"id": "wn:circle", "name": "circle"}, {"id": "wn:cross", "name": "cross"}]
    classes.append({"id": "x", "name": "square"})
    seen, how = seen_classes(bench, classes)
    assert how == "entity id" and seen == {"circle": True, "square": False, "triangle": False, "cross": False}
    # with the KB's same-as links: the benchmark's entity is an alias of a training class
    seen, _ = seen_classes(bench, classes, canonical=lambda e: {"wn:crux": "wn:cross"}.get(e, e))
    assert seen == {"circle": True, "square": False, "triangle": False, "cross": True}
    (shapes_benchmark / "classes.json").unlink()  # no entity ids: names decide
    seen, how = seen_classes(load_benchmark(shapes_benchmark), classes)
    assert how == "name" and seen == {"circle": True, "square": True, "triangle": False, "cross": True}


def test_mofi_eval_on_a_checkpoint_and_the_imagenet_baseline(settings, shapes_benchmark, tmp_path):
    model, _, _ = training.create_model_and_transforms("mofi-tiny-vit", num_classes=2)
    ckpt = tmp_path / "tiny.pt"
    classes = [
        {"index": 0, "id": "wn:circle", "name": "circle", "description": "", "count": 5},
        {"index": 1, "id": "wn:square", "name": "square", "description": "", "count": 5},
    ]
    config = {"recipe": "multitask", "cosface_scale": 32.0, "cosface_margin": 0.2, "class_weight": None}
    state = {"model_name": "mofi-tiny-vit", "model": model.state_dict(), "version": "tiny-0", "classes": classes}
    save_checkpoint(ObjectStore(S3Settings()), str(ckpt), {**state, "config": config})
    run_dir = tmp_path / "runs" / "multitask"
    run_dir.mkdir(parents=True)
    (run_dir / "metrics.jsonl").write_text(
        "".join(
            json.dumps({"step": s, "loss": 5 - s / 10, "class_loss": 4 - s / 10, "contrastive_loss": 2.0}) + "\n"
            for s in range(1, 30)
        )
    )
    out = tmp_path / "results.json"
    png = tmp_path / "curves.png"
    cache = f"s3://{settings.s3.models_bucket}/evaluation"
    args = ["eval", "--benchmark", str(shapes_benchmark), "--checkpoint", str(ckpt), "--out", str(out)]
    runner = CliRunner()
    res = runner.invoke(main, [*args, "--run-dir", str(run_dir), "--curves", str(png)], env=settings.to_env())
    assert res.exit_code == 0, res.output
    results = json.loads(out.read_text())
    assert results["version"] == "tiny-0" and results["num_images"] == 16 and results["image_size"] == 32
    assert set(results["map_per_domain"]) == {"round", "angular"}
    assert 0 < results["map"] <= 1 and 0 <= results["zero_shot_top1"] <= 1 and 0 <= results["linear_probe_top1"] <= 1
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # seen vs unseen: the checkpoint trained circle and square
    assert results["seen_classes"] == ["circle", "square"] and results["unseen_classes"] == ["cross", "triangle"]
    assert results["seen_matched_by"] == "entity id"
    assert results["map"] == pytest.approx((results["map_seen"] + results["map_unseen"]) / 2)  # 8 queries each
    # the frozen baseline at the checkpoint's input size, cached per benchmark and size; chance beside them
    bench = load_benchmark(shapes_benchmark)
    assert results["baseline"]["image_size"] == 32 and results["baseline"]["model"] == BASELINE
    cached = f"{cache}/{bench.digest}/{BASELINE}-32px.npy"
    assert ObjectStore(settings.s3).exists(cached)
    emb = np.load(io.BytesIO(ObjectStore(settings.s3).get_bytes(cached)))
    assert results["baseline"]["map"] == pytest.approx(retrieval_map(emb, bench.labels, bench.domains)["map"])
    assert results["chance"] == chance_map(bench)
    assert results["class_loss_chance"]["value"] == pytest.approx(cosface_chance_loss(2, 32.0, 0.2))
    # a second evaluation reads the cached embeddings instead of embedding the benchmark again
    marked = np.random.default_rng(1).normal(size=emb.shape).astype(np.float32)
    buf = io.BytesIO()
    np.save(buf, marked)
    ObjectStore(settings.s3).put_bytes(cached, buf.getvalue())
    again = runner.invoke(main, args, env=settings.to_env())
    assert again.exit_code == 0, again.output
    assert json.loads(out.read_text())["baseline"]["map"] == pytest.approx(
        retrieval_map(marked, bench.labels, bench.domains)["map"]
    )

    res = runner.invoke(
        main,
        ["eval", "--benchmark", str(shapes_benchmark), "--baseline", BASELINE, "--image-size", "64"],
        env=settings.to_env(),
    )
    assert res.exit_code == 0, res.output
    base = json.loads(res.output[res.output.index("{") :])
    assert base["image_size"] == 64 and base["chance"] == results["chance"]
    assert base["zero_shot_top1"] is None and base["map"] > base["chance"]["map"] + 0.15  # ImageNet features see shapes
