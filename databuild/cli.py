"""`mofi data fetch|build|report` and `mofi produce`: thin click adapters over the data modules."""

from __future__ import annotations

import functools
import json
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import click

from mofi.objstore import ObjectStore, join_uri
from mofi.settings import Settings

__all__ = ["data", "produce", "kb"]

STEPS = ("corpus", "kb", "benchmark")


def built_kb_path(settings: Settings) -> Path:
    """Where `mofi data build` writes the built-in knowledge base."""
    return Path(settings.data.build_dir) / "kb" / "kb.jsonl"


@click.group()
def data() -> None:
    """Source packages -> corpus shards, knowledge base and benchmark."""


@data.command("fetch")
@click.option("--only", "keys", multiple=True, help="Fetch only these source keys (default: all).")
@click.pass_obj
def fetch_cmd(settings: Settings, keys: tuple[str, ...]) -> None:
    """Download the pinned packages into settings.data.cache_dir (a second run downloads nothing)."""
    from mofi_platform.databuild.fetch import FetchError, fetch
    from mofi_platform.databuild.sources import PACKAGES

    unknown = set(keys) - {p.key for p in PACKAGES}
    if unknown:
        raise click.UsageError(f"unknown source keys: {', '.join(sorted(unknown))}")
    try:
        items = fetch(settings.data.cache_dir, keys or None, progress=click.echo)
    except FetchError as e:
        raise click.ClickException(str(e)) from None
    for f in items:
        click.echo(
            f"{'downloaded' if f.downloaded else 'cached':10} {f.key:18} {f.version:16} {f.sha256[:12]}  {f.licence}"
        )
    click.echo(
        f"{sum(f.downloaded for f in items)} downloaded, {sum(not f.downloaded for f in items)} already cached; "
        f"lock: {Path(settings.data.cache_dir) / 'sources.lock.json'}"
    )


@data.command("build")
@click.option(
    "--out",
    default=None,
    help="Corpus + KB destination: s3://bucket[/prefix] or a local folder (default s3://<s3.corpus_bucket>).",
)
@click.option("--only", "steps", multiple=True, type=click.Choice(STEPS), help="Build only these parts.")
@click.option("--source", "sources", multiple=True, help="Corpus sources to build (default: all).")
@click.option(
    "--max-per-source",
    "--limit-per-source",
    "limit_per_source",
    default=0,
    show_default=True,
    help="Most pairs per corpus source, the same ones every run (0: all).",
)
@click.option(
    "--pairs",
    default=0,
    show_default=True,
    help="Keep a seeded subset of this many pairs of the whole corpus (0: all).",
)
@click.option("--seed", default=0, show_default=True, help="Seed of the --pairs subset.")
@click.option(
    "--subset",
    type=click.Choice(["random", "dense"]),
    default="random",
    show_default=True,
    help="Which --pairs subset: random (each source in proportion) or dense (whole entities drawn by the most "
    "sources, up to 16 images each, then random).",
)
@click.option("--emoji-classes", default=200, show_default=True, help="Emoji classes in the benchmark.")
@click.option("--workers", default=2, show_default=True, help="Image decoding processes.")
@click.pass_obj
def build_cmd(
    settings: Settings,
    out: str | None,
    steps: tuple[str, ...],
    sources: tuple[str, ...],
    limit_per_source: int,
    pairs: int,
    seed: int,
    subset: str,
    emoji_classes: int,
    workers: int,
) -> None:
    """Build the corpus shards, the knowledge base and the benchmark, then print the report.

    A rerun resumes: corpus sources already built into OUT with the same selection are reused."""
    from minio.error import MinioException
    from urllib3.exceptions import HTTPError

    from mofi.kb import KnowledgeBase, write_kb
    from mofi_platform.databuild.build import build_benchmark, build_corpus, build_kb
    from mofi_platform.databuild.extractors import EXTRACTORS
    from mofi_platform.databuild.fetch import FetchError, read_lock, unpacked_dir
    from mofi_platform.databuild.report import REPORT_NAME, render_report

    cfg = settings.data
    out = out or f"s3://{settings.s3.corpus_bucket}"
    steps = steps or STEPS
    unknown = set(sources) - set(EXTRACTORS)
    if unknown:
        raise click.UsageError(f"unknown corpus sources: {', '.join(sorted(unknown))}; known: {', '.join(EXTRACTORS)}")
    build_dir = Path(cfg.build_dir)
    build_dir.mkdir(parents=True, exist_ok=True)
    store = ObjectStore(settings.s3)

    def dirs(key: str) -> Path:
        return unpacked_dir(cfg.cache_dir, key)

    started = time.monotonic()
    report: dict = {
        "built": datetime.now(UTC).isoformat(timespec="seconds"),
        "out": out,
        "packages": list(read_lock(cfg.cache_dir).values()),
    }
    kb_path = built_kb_path(settings)
    try:
        if "kb" in steps:
            entities, merge = build_kb(dirs)
            kb_path.parent.mkdir(parents=True, exist_ok=True)
            write_kb(entities, kb_path)
            store.put_file(join_uri(out, "kb", "kb.jsonl"), kb_path)
            t0 = time.monotonic()
            kb = KnowledgeBase.load(kb_path)
            load_s = round(time.monotonic() - t0, 3)
            report["kb"] = {
                "path": str(kb_path),
                "uri": join_uri(out, "kb", "kb.jsonl"),
                "entities": len(kb),
                "aliases": sum(1 for _ in kb.aliases()),
                "load_seconds": load_s,
                "by_source": dict(Counter(e.source for e in kb)),
                "merged": {k.split(":")[0]: v for k, v in merge.items() if k.endswith(":merged")},
                "dup_ids": {k.split(":")[0]: v for k, v in merge.items() if k.endswith(":dup_id")},
                "same_as": {
                    "alias_entities": sum(1 for e in kb if e.same_as),
                    "canonical_entities": len({e.same_as for e in kb if e.same_as}),
                    "by_rule": {k.split(":")[0]: v for k, v in merge.items() if k.endswith(":same_as")},
                },
            }
        if "corpus" in steps:
            reps = build_corpus(
                store,
                out,
                dirs,
                sources=sources or list(EXTRACTORS),
                limit_per_source=limit_per_source,
                pairs=pairs,
                seed=seed,
                dense=_entity_namer(kb_path, dirs) if subset == "dense" else None,
                max_pixels=cfg.max_pixels,
                image_size=cfg.image_size,
                shard_size=cfg.shard_size,
                workers=workers,
                progress=click.echo,
            )
            report["selection"] = {"max_per_source": limit_per_source, "pairs": pairs, "seed": seed, "subset": subset}
            report["corpus"] = [r.to_dict() for r in reps]
        if "benchmark" in steps:
            bench_dir = build_dir / "benchmark"
            stats = build_benchmark(
                dirs, bench_dir, emoji_classes=emoji_classes, max_pixels=cfg.max_pixels, image_size=cfg.image_size
            )
            report["benchmark"] = {
                "dir": str(bench_dir),
                "classes": dict(stats.classes),
                "images": dict(stats.images),
                "rejected": dict(stats.rejected),
            }
    except FetchError as e:
        raise click.ClickException(str(e)) from None
    except (MinioException, HTTPError) as e:
        raise click.ClickException(f"cannot write to {out} (S3 endpoint {settings.s3.endpoint}): {e}") from None
    report["seconds"] = round(time.monotonic() - started, 1)
    text = json.dumps(report, indent=2, ensure_ascii=False)
    (build_dir / REPORT_NAME).write_text(text + "\n")
    store.put_bytes(join_uri(out, REPORT_NAME), text.encode(), "application/json")
    click.echo(render_report(report))


def _entity_namer(kb_path: Path, dirs: Callable[[str], Path]) -> Callable[[str], str | None]:
    """alt-text -> the drawable canonical entity it names, by the built KB (or one built now when there is none)."""
    from mofi.kb import KnowledgeBase
    from mofi_platform.databuild.build import build_kb
    from mofi_platform.databuild.depictions import drawable_entity

    kb = KnowledgeBase.load(kb_path) if kb_path.exists() else KnowledgeBase(build_kb(dirs)[0])
    return functools.partial(drawable_entity, kb)


@data.command("report")
@click.option("--json", "as_json", is_flag=True, help="Print the raw report.json.")
@click.pass_obj
def report_cmd(settings: Settings, as_json: bool) -> None:
    """Print the last build's report (from settings.data.build_dir)."""
    from mofi_platform.databuild.report import load_report, render_report

    try:
        report = load_report(settings.data.build_dir)
    except FileNotFoundError as e:
        raise click.ClickException(str(e)) from None
    click.echo(json.dumps(report, indent=2, ensure_ascii=False) if as_json else render_report(report))


@click.command("produce")
@click.option("--corpus", "corpus_uri", default=None, help="Corpus prefix (default s3://<s3.corpus_bucket>/shards/).")
@click.option("--fixture", is_flag=True, help="Send the committed test fixture instead of the corpus.")
@click.option(
    "--webdataset",
    default=None,
    help="img2dataset / WebDataset tar shards: a folder, an s3:// prefix, a brace pattern "
    "(shards-{00000..00099}.tar, local or s3://) or one .tar.",
)
@click.option("--manifest", default=None, help="A .parquet, .csv or .jsonl table: image path or s3:// URI, caption.")
@click.option("--folder", default=None, help="A folder of images (jpg, png, webp), a <name>.txt caption beside each.")
@click.option("--image-column", default="image", show_default=True, help="--manifest: the image path / URI column.")
@click.option(
    "--caption-column", default="caption", show_default=True, help="--manifest: the caption column (TEXT, alt, ...)."
)
@click.option("--name", default=None, help="Source name of the pairs (default: the folder, prefix or file name).")
@click.option("--licence", default="unknown", show_default=True, help="Licence of pairs whose metadata names none.")
@click.option(
    "--progress-file",
    default=None,
    help="Acknowledged positions, for resuming (default: under data.build_dir/produce-progress/).",
)
@click.option("--restart", is_flag=True, help="Forget the saved progress and send everything again.")
@click.option("--rate", default=0.0, show_default=True, help="Most pairs per second (0: as fast as acknowledged).")
@click.option("--limit", default=0, show_default=True, help="Stop after this many pairs (0: all).")
@click.pass_obj
def produce(
    settings: Settings,
    corpus_uri: str | None,
    fixture: bool,
    webdataset: str | None,
    manifest: str | None,
    folder: str | None,
    image_column: str,
    caption_column: str,
    name: str | None,
    licence: str,
    progress_file: str | None,
    restart: bool,
    rate: float,
    limit: int,
) -> None:
    """Stream pairs into settings.kafka.pairs_topic (schema mofi.pair.v1), keyed by pair id.

    With --webdataset, --manifest or --folder, bad items (missing image or caption, undecodable image,
    caption too long or empty) are skipped and reported, and a rerun resumes after the last
    acknowledged item."""
    from kafka.errors import KafkaError

    from mofi.kafka import ensure_topics, make_producer
    from mofi_platform.databuild.produce import produce_acked

    own = [o for o in (webdataset, manifest, folder) if o]
    if len(own) + bool(fixture) + bool(corpus_uri) > 1:
        raise click.UsageError("pass at most one of --corpus, --fixture, --webdataset, --manifest and --folder")
    store = ObjectStore(settings.s3)
    progress = bad = None
    if own:
        from mofi_platform.databuild import ingest

        source = _own_source(settings, store, webdataset, manifest, folder, image_column, caption_column, name, licence)
        path = Path(progress_file) if progress_file else ingest.progress_path(settings.data.build_dir, source.name, own)
        if restart:
            path.unlink(missing_ok=True)
        try:
            progress = ingest.Progress(path, f"{source.name} {own[0]}")
        except ValueError as e:
            raise click.UsageError(f"{e}; pass --restart or another --progress-file") from None
        bad = ingest.BadItems()
        items = ingest.stream(source, progress, bad)
    else:
        items = ((s, None) for s in _corpus_samples(settings, store, corpus_uri, fixture))
    try:
        ensure_topics(settings.kafka, [settings.kafka.pairs_topic])
        producer = make_producer(settings.kafka)
    except KafkaError as e:
        raise click.ClickException(f"cannot reach the broker at {settings.kafka.bootstrap_servers}: {e}") from None
    tick = progress.maybe_save if progress else None
    try:
        stats = produce_acked(items, producer, settings.kafka, settings.s3, store, rate=rate, limit=limit, tick=tick)
    except KafkaError as e:
        raise click.ClickException(f"delivery to {settings.kafka.pairs_topic} failed: {e}") from None
    except (ValueError, OSError) as e:
        raise click.ClickException(str(e)) from None
    finally:
        producer.close()
        if progress is not None:
            progress.save()
    click.echo(
        f"sent {stats.sent} pairs to {settings.kafka.pairs_topic} ({stats.inline} inline, {stats.by_reference} "
        f"by reference, {stats.bytes / 1e6:.1f} MB) in {stats.seconds:.1f} s "
        f"({stats.sent / max(stats.seconds, 1e-9):.0f} pairs/s)"
    )
    if bad is not None and progress is not None:
        click.echo(bad.report())
        click.echo(f"progress: {progress.path}")


def _corpus_samples(settings: Settings, store: ObjectStore, corpus_uri: str | None, fixture: bool):
    if fixture:
        from mofi_platform.databuild.fixtures import load_fixture_pairs

        return iter(load_fixture_pairs())
    from mofi_platform.databuild.corpus import default_shards_prefix, iter_corpus

    return iter_corpus(store, corpus_uri or default_shards_prefix(settings.s3))


def _own_source(
    settings: Settings,
    store: ObjectStore,
    webdataset: str | None,
    manifest: str | None,
    folder: str | None,
    image_column: str,
    caption_column: str,
    name: str | None,
    licence: str,
):
    from mofi_platform.databuild import ingest

    spec = webdataset or manifest or folder or ""
    name = name or ingest.default_name(spec)
    checks = ingest.Checks(max_text_chars=settings.ner.max_text_chars, max_pixels=settings.data.max_pixels)
    if webdataset:
        return ingest.WebDatasetSource(webdataset, name, licence, checks, store)
    if manifest:
        if not Path(manifest).is_file():
            raise click.UsageError(f"no manifest at {manifest}")
        source = ingest.ManifestSource(manifest, name, licence, checks, store, image_column, caption_column)
        try:
            source.format  # noqa: B018  # checks the suffix before anything is sent
        except ValueError as e:
            raise click.UsageError(str(e)) from None
        return source
    if not Path(spec).is_dir():
        raise click.UsageError(f"no folder at {spec}")
    return ingest.FolderSource(spec, name, licence, checks)


@click.group()
def kb() -> None:
    """Knowledge bases from elsewhere: a Wikidata JSON dump, JSONL files in the KB's own format."""


@kb.command("import")
@click.option(
    "--wikidata",
    "dumps",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A Wikidata JSON dump (latest-all.json.gz / .bz2 / .json); repeatable.",
)
@click.option(
    "--jsonl",
    "jsonl",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Entities in the KB's own JSONL format (id, name, aliases, description, type, source, prior); repeatable.",
)
@click.option(
    "--merge-builtin",
    is_flag=True,
    help="Start from the built-in KB (`mofi data build`); Wikidata items naming one of its entities by GeoNames "
    "or ISO 3166 code become aliases of it.",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The KB file to write (default: <data.build_dir>/kb/imported.jsonl).",
)
@click.option("--upload", default=None, help="Also copy the KB to this s3:// URI (for `mofi ner fetch`).")
@click.option("--limit", default=0, show_default=True, help="Stop after this many Wikidata items (0: all).")
@click.pass_obj
def kb_import(
    settings: Settings,
    dumps: tuple[Path, ...],
    jsonl: tuple[Path, ...],
    merge_builtin: bool,
    out: Path | None,
    upload: str | None,
    limit: int,
) -> None:
    """Build a knowledge base from a Wikidata dump and/or JSONL files, streamed; print its version id.

    Point the NER stage at it with ner.kb_path (MOFI_NER_KB_PATH) and build its vectors with `mofi ner vectors`."""
    from mofi.kb import KnowledgeBase
    from mofi_platform.databuild.kb_import import import_kb

    if not dumps and not jsonl:
        raise click.UsageError("nothing to import: pass --wikidata and/or --jsonl")
    merge = built_kb_path(settings) if merge_builtin else None
    if merge is not None and not merge.is_file():
        raise click.UsageError(f"no built-in knowledge base at {merge} (run `mofi data build --only kb` first)")
    out = out or built_kb_path(settings).with_name("imported.jsonl")
    try:
        report = import_kb(out, wikidata=dumps, jsonl=jsonl, merge=merge, limit=limit)
        loaded = KnowledgeBase.load(out)  # checks ids and same-as links, and writes the index of a large KB
    except (ValueError, OSError, EOFError) as e:
        raise click.ClickException(str(e)) from None
    if upload:
        ObjectStore(settings.s3).put_file(upload, out)
    click.echo(json.dumps(report.to_dict(), indent=2, ensure_ascii=False))
    click.echo(
        f"knowledge base {out}: {len(loaded)} entities, {sum(1 for _ in loaded.aliases())} aliases, "
        f"version {loaded.version}" + (f"; copied to {upload}" if upload else "")
    )
