"""A small real-image stand-in for the ablation: Tux Paint stamps -> I2E shards + a GPR1200-layout benchmark.

Why this exists: the ablation needs an I2E snapshot (entities per image) and a development
benchmark. This script builds both from one real source so the four training rows can be compared
before the full corpus -> NER -> scorer -> writer pipeline has produced a snapshot:

- source: Debian ``tuxpaint-stamps-default`` (~800 drawn and photographic stamps, GPL-2+; fetched
  with ``apt-get download`` into the cache folder, never committed), each with an English
  description (``<stamp>.txt``, first line) that serves as the raw alt-text;
- entities (the I2E part): the stamp's category (e.g. ``animals/birds`` -> "birds: animals") and
  its top-level collection (``animals``), so images carry one or two entities; style folders
  (``cartoon``, ``toys``) are folded into their category; alphabets are left out (a letter is not
  an entity whose images look alike);
- benchmark: for each category with >= 8 stamps, 4 stamps (picked by a hash of the file path)
  are held out in GPR1200 layout ``{category}_{stamp}.png``; domains "nature" (animals, plants,
  food, space, natural forces) and "culture" (everything else). Held-out stamps never appear in
  the shards.

    .venv/bin/python benchmarks/train_ablation_data.py --cache /tmp/train-ablation/cache \\
        --benchmark /tmp/train-ablation/benchmark --i2e s3://ablation-i2e

Writes shards and the snapshot (``<i2e>/snapshots/tuxpaint/manifest.json``) through ``mofi.i2e``
to the object store named by the MOFI_* settings, and prints a summary.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import subprocess
from collections import defaultdict
from pathlib import Path

from PIL import Image

from mofi.i2e import I2ESample, create_snapshot, write_shard
from mofi.i2e.layout import SNAPSHOTS_PREFIX
from mofi.objstore import ObjectStore, join_uri
from mofi.settings import load_settings

PACKAGE = "tuxpaint-stamps-default"
STYLE_FOLDERS = {"cartoon", "toys", "photo", "realistic"}
NATURE = {"animals", "plants", "food", "space", "naturalforces"}
HELD_OUT, MIN_FOR_BENCHMARK, SHARD_SIZE = 4, 8, 128


def stamps_root(cache: Path) -> Path:
    root = cache / "extracted" / "usr/share/tuxpaint/stamps"
    if root.is_dir():
        return root
    cache.mkdir(parents=True, exist_ok=True)
    debs = sorted(cache.glob(f"{PACKAGE}_*.deb"))
    if not debs:
        subprocess.run(["apt-get", "download", PACKAGE], cwd=cache, check=True)
        debs = sorted(cache.glob(f"{PACKAGE}_*.deb"))
    subprocess.run(["dpkg-deb", "-x", str(debs[-1]), str(cache / "extracted")], check=True)
    return root


def category(rel: Path) -> tuple[str, ...]:
    parts = [p for p in rel.parent.parts if p not in STYLE_FOLDERS]
    return tuple(parts)


def small_png(path: Path, size: int = 192) -> bytes:
    with Image.open(path) as im:
        im = im.convert("RGBA")
        im.thumbnail((size, size))
        canvas = Image.new("RGB", im.size, (255, 255, 255))
        canvas.paste(im, mask=im.getchannel("A"))
    buf = io.BytesIO()
    canvas.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cache", default="/tmp/train-ablation/cache")
    p.add_argument("--benchmark", default="/tmp/train-ablation/benchmark")
    p.add_argument("--i2e", default="s3://ablation-i2e")
    args = p.parse_args()

    root = stamps_root(Path(args.cache))
    by_cat: dict[tuple[str, ...], list[tuple[Path, str]]] = defaultdict(list)
    for png in sorted(root.rglob("*.png")):
        rel = png.relative_to(root)
        txt = png.with_suffix(".txt")
        if rel.parts[:2] == ("symbols", "alphabets") or not txt.exists():
            continue
        alt = txt.read_text(errors="replace").splitlines()[0].strip()
        cat = category(rel)
        if alt and cat:
            by_cat[cat].append((png, alt))

    bench = Path(args.benchmark)
    bench.mkdir(parents=True, exist_ok=True)
    domains, classes, samples = {}, {}, []
    for cat, items in sorted(by_cat.items()):
        label = "-".join(cat)
        items = sorted(items, key=lambda t: hashlib.sha1(str(t[0].relative_to(root)).encode()).hexdigest())
        held = items[:HELD_OUT] if len(items) >= MIN_FOR_BENCHMARK else []
        for png, _ in held:
            (bench / f"{label}_{png.stem.replace('_', '-')}.png").write_bytes(small_png(png))
        if held:
            domains[label] = "nature" if cat[0] in NATURE else "culture"
            classes[label] = {"name": cat[-1], "description": ", ".join(cat[:-1])}
        for png, alt in items[len(held) :]:
            entities = [
                {"id": f"tux:{'/'.join(cat)}", "name": cat[-1], "description": ", ".join(cat[:-1]), "score": 1.0}
            ]
            if len(cat) > 1:
                entities.append({"id": f"tux:{cat[0]}", "name": cat[0], "description": "", "score": 1.0})
            pair_id = hashlib.sha1(f"tuxpaint:{png.relative_to(root)}".encode()).hexdigest()[:16]
            samples.append(
                I2ESample(
                    pair_id,
                    small_png(png),
                    "png",
                    {
                        "text": alt,
                        "source": "tuxpaint",
                        "licence": "GPL-2.0-or-later",
                        "entities": entities,
                        "scorer_model": "category-folders",
                    },
                )
            )
    (bench / "domains.json").write_text(json.dumps(domains, indent=1))
    (bench / "classes.json").write_text(json.dumps(classes, indent=1))

    settings = load_settings()
    store = ObjectStore(settings.s3)
    prefix = join_uri(args.i2e, settings.writer.prefix)
    for start in range(0, len(samples), SHARD_SIZE):
        write_shard(store, f"{prefix}/tuxpaint-{start // SHARD_SIZE:04d}.tar", samples[start : start + SHARD_SIZE])
    snap_uri = join_uri(args.i2e, SNAPSHOTS_PREFIX, "tuxpaint", "manifest.json")
    snap = create_snapshot(store, prefix + "/", snap_uri, min_count=2, val_percent=0)
    print(
        json.dumps(
            {
                "snapshot": snap_uri,
                "train_images": snap.num_samples,
                "classes": len(snap.classes),
                "benchmark": str(bench),
                "benchmark_images": len(list(bench.glob("*.png"))),
                "benchmark_classes": len(domains),
                "domains": sorted(set(domains.values())),
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
